//! What a reaction must be for an `--expect-react` to hold: a program by its command line, a
//! connect by its destination, the workload's exit, or any of them. The journal keeps the
//! first reaction each given matcher matches as it records them, so a match is found even
//! past the bounds of what the report lists.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::{ReactKind, Reaction};

/// One kind of reaction, narrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReactMatcher {
    /// Any reaction.
    Any,
    /// A program whose command line has these words in this order (others may come between):
    /// the first names the program (`kubectl` matches `/usr/local/bin/kubectl`, and a script
    /// run through its interpreter), the rest are arguments. `*` in a word stands for any
    /// characters.
    Exec(Vec<String>),
    /// A connect to this address, port or both (and protocol, if given).
    Connect(Destination),
    /// The workload exiting (its cgroup left empty).
    Exit,
}

/// A destination pattern: `10.0.0.1:443`, `:443`, `10.0.0.1`, `[fd00::1]:443`, each with an
/// optional `/tcp` or `/udp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub proto: Option<String>,
}

impl ReactMatcher {
    pub fn matches(&self, r: &Reaction) -> bool {
        match self {
            ReactMatcher::Any => true,
            ReactMatcher::Exit => r.kind == ReactKind::Exit,
            ReactMatcher::Exec(words) => r.kind == ReactKind::Exec && command_has(r, words),
            ReactMatcher::Connect(d) => {
                r.kind == ReactKind::Connect
                    && r.destination.as_deref().is_some_and(|x| d.matches(x))
            }
        }
    }

    /// The kind of reaction it looks for (`None`: any).
    pub fn kind(&self) -> Option<ReactKind> {
        match self {
            ReactMatcher::Any => None,
            ReactMatcher::Exec(_) => Some(ReactKind::Exec),
            ReactMatcher::Connect(_) => Some(ReactKind::Connect),
            ReactMatcher::Exit => Some(ReactKind::Exit),
        }
    }
}

/// Whether the program's command line has `words` in order, the first naming the program.
fn command_has(r: &Reaction, words: &[String]) -> bool {
    let Some((first, rest)) = words.split_first() else {
        return false;
    };
    let argv: Vec<&str> = if r.argv.is_empty() {
        vec![r.comm.as_str()]
    } else {
        r.argv.iter().map(String::as_str).collect()
    };
    let names = |w: &str| {
        // A pattern with a slash is a path; without one it names the program by its file name.
        let w = if first.contains('/') {
            w
        } else {
            w.rsplit('/').next().unwrap_or(w)
        };
        glob(first, w)
    };
    // Where the program's name can be: first, or (a script run through its interpreter,
    // `/bin/sh /usr/bin/kubectl drain`) the word the kernel named the process after.
    let program_word = |i: usize| {
        let base = argv[i].rsplit('/').next().unwrap_or(argv[i]);
        i == 0 || (!r.comm.is_empty() && base.as_bytes().starts_with(r.comm.as_bytes()))
    };
    (0..argv.len())
        .filter(|&i| program_word(i) && names(argv[i]))
        .any(|i| {
            let mut later = argv[i + 1..].iter();
            rest.iter().all(|p| later.any(|w| glob(p, w)))
        })
}

/// `pattern` matches all of `text`, `*` standing for any characters.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the latest `*` was, and the text position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Destination {
    /// Whether `destination` (as the journal writes it: `10.0.0.1:443/tcp`) is one of these.
    fn matches(&self, destination: &str) -> bool {
        let (addr, proto) = destination.rsplit_once('/').unwrap_or((destination, ""));
        let Ok(addr) = SocketAddr::from_str(addr) else {
            return false;
        };
        self.ip.is_none_or(|ip| ip == addr.ip())
            && self.port.is_none_or(|p| p == addr.port())
            && self.proto.as_deref().is_none_or(|p| p == proto)
    }
}

impl FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`connect {s}`: give an IP address, a port or both (10.0.0.1:443, :443, 10.0.0.1, [fd00::1]:443, optionally /tcp or /udp); a host name cannot be matched, the kernel sees addresses (for the API server: the address of `kubectl get svc kubernetes`)"
            )
        };
        let (addr, proto) = match s.rsplit_once('/') {
            Some((a, p @ ("tcp" | "udp"))) => (a, Some(p.to_string())),
            Some(_) => return Err(bad()),
            None => (s, None),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        let (ip, port) = if let Some(p) = addr.strip_prefix(':') {
            (None, Some(port(p)?))
        } else if let Ok(sa) = SocketAddr::from_str(addr) {
            (Some(sa.ip()), Some(port(&sa.port().to_string())?))
        } else {
            let bare = addr.trim_start_matches('[').trim_end_matches(']');
            (Some(IpAddr::from_str(bare).map_err(|_| bad())?), None)
        };
        Ok(Destination { ip, port, proto })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (Some(IpAddr::V6(ip)), Some(p)) => write!(f, "[{ip}]:{p}")?,
            (Some(ip), Some(p)) => write!(f, "{ip}:{p}")?,
            (Some(ip), None) => write!(f, "{ip}")?,
            (None, Some(p)) => write!(f, ":{p}")?,
            (None, None) => {}
        }
        if let Some(p) = &self.proto {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

impl FromStr for ReactMatcher {
    type Err = String;

    /// `any`, `exec WORD…`, `connect DESTINATION`, `exit`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let rest: Vec<String> = words.map(str::to_string).collect();
        match (kind, rest.as_slice()) {
            ("any", []) => Ok(ReactMatcher::Any),
            ("exit", []) => Ok(ReactMatcher::Exit),
            ("exec", []) => Err(
                "`exec` needs the program's command line to look for, such as `exec kubectl drain`"
                    .into(),
            ),
            ("exec", _) => Ok(ReactMatcher::Exec(rest)),
            ("connect", [d]) => Ok(ReactMatcher::Connect(d.parse()?)),
            ("connect", _) => Err(
                "`connect` needs one destination, such as `connect 10.0.0.1:443` or `connect :443`"
                    .into(),
            ),
            ("any" | "exit", _) => Err(format!("`{kind}` takes nothing after it")),
            _ => Err(format!(
                "unknown reaction `{kind}`: use exec (a program), connect (an outbound connect), exit (the workload exiting) or any"
            )),
        }
    }
}

impl fmt::Display for ReactMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReactMatcher::Any => f.write_str("any"),
            ReactMatcher::Exit => f.write_str("exit"),
            ReactMatcher::Exec(words) => write!(f, "exec {}", words.join(" ")),
            ReactMatcher::Connect(d) => write!(f, "connect {d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(argv: &[&str], comm: &str) -> Reaction {
        Reaction {
            kind: ReactKind::Exec,
            at_ms: 0,
            pid: 1,
            comm: comm.into(),
            argv: argv.iter().map(|w| w.to_string()).collect(),
            destination: None,
            new_command: true,
        }
    }

    fn connect(destination: &str) -> Reaction {
        Reaction {
            kind: ReactKind::Connect,
            destination: Some(destination.into()),
            ..exec(&[], "kubectl")
        }
    }

    fn m(s: &str) -> ReactMatcher {
        s.parse().unwrap()
    }

    #[test]
    fn a_program_matches_by_its_name_and_its_arguments_in_order() {
        let drain = exec(
            &[
                "/bin/sh",
                "/usr/local/bin/kubectl",
                "drain",
                "node-1",
                "--force",
            ],
            "kubectl",
        );
        assert!(m("exec kubectl drain").matches(&drain));
        assert!(m("exec kubectl drain --force").matches(&drain));
        assert!(m("exec kubectl drain node-*").matches(&drain));
        assert!(m("exec /usr/local/bin/kubectl drain").matches(&drain));
        assert!(!m("exec kubectl cordon").matches(&drain));
        assert!(!m("exec kubectl --force drain").matches(&drain), "in order");
        assert!(
            !m("exec drain node-1").matches(&drain),
            "the first word names the program"
        );
        assert!(!m("exec kubectl drain").matches(&connect("10.0.0.1:443/tcp")));
        // aws puts options before its subcommand: the words need not be adjacent.
        let aws = exec(
            &[
                "aws",
                "--region",
                "eu-west-1",
                "autoscaling",
                "complete-lifecycle-action",
                "--lifecycle-action-result",
                "CONTINUE",
            ],
            "aws",
        );
        assert!(m("exec aws autoscaling complete-lifecycle-action").matches(&aws));
        // A program whose command line could not be read still has its name.
        assert!(m("exec date").matches(&exec(&[], "date")));
    }

    #[test]
    fn a_connect_matches_by_address_port_and_protocol() {
        let api = connect("10.100.0.1:443/tcp");
        for yes in [
            "connect 10.100.0.1:443",
            "connect :443",
            "connect 10.100.0.1",
            "connect :443/tcp",
        ] {
            assert!(m(yes).matches(&api), "{yes}");
        }
        for no in ["connect :6443", "connect 10.0.0.1", "connect :443/udp"] {
            assert!(!m(no).matches(&api), "{no}");
        }
        let v6 = connect("[fd00::1]:443/tcp");
        assert!(m("connect [fd00::1]:443").matches(&v6));
        assert!(m("connect fd00::1").matches(&v6));
        assert!(m("any").matches(&v6));
        assert!(!m("exit").matches(&v6));
    }

    #[test]
    fn the_text_form_reads_back_and_bad_ones_say_what_to_write() {
        for s in [
            "any",
            "exit",
            "exec kubectl drain",
            "connect 10.0.0.1:443/tcp",
            "connect :443",
            "connect [fd00::1]:443",
            "connect 10.0.0.1",
        ] {
            assert_eq!(m(s).to_string(), s);
        }
        for (bad, says) in [
            ("exec", "needs the program"),
            ("connect", "needs one destination"),
            (
                "connect kubernetes.default:443",
                "host name cannot be matched",
            ),
            ("connect :0", "give an IP address"),
            ("connect :443/sctp", "give an IP address"),
            ("exit now", "takes nothing"),
            ("drain", "unknown reaction `drain`"),
        ] {
            let e = bad.parse::<ReactMatcher>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn glob_stars_stand_for_any_characters() {
        assert!(glob("node-*", "node-1"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b", "axxc"));
        assert!(!glob("node", "node-1"));
    }
}
