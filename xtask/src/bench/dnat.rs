//! The two setups spot-sim replaces. The old way: an alias of the IMDS address on `lo` and socat
//! relaying it. The iptables DNAT setup, measured fairly: no alias of the old way left on `lo` (a route to
//! the IMDS address instead, which is all DNAT needs), the conntrack table emptied before every
//! run of the phase, direct runs included (once a NAT rule exists every connection in the
//! namespace is tracked), and the sysctls it needs set, and said in the results.
//!
//! Why the flush: new connections at these rates fill the table. At 20,000 connections a second
//! with the default 120 s TIME_WAIT timeout, `nf_conntrack_max` (262,144 here) is reached within
//! 15 s, and from then on new connections' SYNs are dropped and retried a second later: the
//! figure then depends on what earlier runs left in the table, not on what DNAT costs.

use std::{
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use anyhow::Result;

use super::{
    check_answer, command_in,
    report::{Load, Mode, Row},
    spawn, wait_listening, Bench, NetNs, IMDS, PATH, PORT,
};

/// What the DNAT setup sets in the bench's namespace, as the results state it.
const SYSCTLS: &str = "net.ipv4.conf.{all,lo}.route_localnet=1";

impl Bench<'_> {
    /// The old way's rows: an alias of the IMDS address on `lo` and socat relaying it to the
    /// server, compared with direct; the alias is removed after.
    pub(super) fn old_way_rows(
        &self,
        ns: &NetNs,
        servers: &Path,
        (clients, imds_url): (&Path, &str),
        rows: &mut Vec<Row>,
        direct: &mut Vec<(Mode, Load)>,
    ) -> Result<()> {
        let direct_url = format!("http://127.0.0.1:{PORT}{PATH}");
        let reference = (clients, direct_url.as_str());
        eprintln!("== load: the old way (loopback alias + socat)");
        ns.sh(&format!("ip addr add {IMDS}/32 dev lo"))?;
        {
            let mut cmd = command_in(
                ns,
                servers,
                Path::new("socat"),
                &[
                    &format!("TCP4-LISTEN:80,bind={IMDS},fork,reuseaddr,backlog=1024"),
                    &format!("TCP4:127.0.0.1:{PORT}"),
                ],
            )?;
            let _socat = spawn("socat", &mut cmd)?;
            wait_listening(ns, SocketAddr::from(([169, 254, 169, 254], 80)))?;
            check_answer(ns, clients, imds_url)?;
            for mode in [Mode::NewConnection, Mode::KeepAlive] {
                let (d, row) = self.compare(
                    ns,
                    reference,
                    "old way (alias + socat)",
                    (clients, imds_url),
                    mode,
                )?;
                direct.extend(d.into_iter().map(|l| (mode, l)));
                rows.push(row);
            }
        }
        // DNAT needs no address on lo: a fair measure of it starts without the alias.
        ns.sh(&format!("ip addr del {IMDS}/32 dev lo"))?;
        Ok(())
    }

    /// The DNAT rows (or a row saying why it could not run), each run paired with direct;
    /// returns the paragraph that says how they were measured.
    pub(super) fn dnat_rows(
        &self,
        ns: &NetNs,
        reference: (&std::path::Path, &str),
        clients: &std::path::Path,
        imds_url: &str,
        rows: &mut Vec<Row>,
        direct: &mut Vec<(Mode, Load)>,
    ) -> Result<String> {
        eprintln!("== load: iptables DNAT");
        let setup = setup(ns).and_then(|()| check_answer(ns, clients, imds_url));
        self.conntrack_flush.set(true);
        for mode in [Mode::NewConnection, Mode::KeepAlive] {
            match &setup {
                Ok(()) => {
                    let (d, row) =
                        self.compare(ns, reference, "iptables DNAT", (clients, imds_url), mode)?;
                    direct.extend(d.into_iter().map(|l| (mode, l)));
                    rows.push(row);
                }
                Err(e) => rows.push(Row {
                    setup: "iptables DNAT",
                    mode,
                    runs: Vec::new(),
                    ratios: Vec::new(),
                    note: format!("unavailable: {}", super::first_line(&format!("{e:#}"))),
                }),
            }
        }
        self.conntrack_flush.set(false);
        teardown(ns);
        let max = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        Ok(format!(
            "iptables DNAT: `iptables -t nat -A OUTPUT -d {IMDS}/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.1:{PORT}`, a route to {IMDS} via `lo` (no address: the old way's alias is removed first), {SYSCTLS}; the conntrack table emptied before every run of this phase, direct runs included; at most {} entries after a run (nf_conntrack_max {max}).",
            self.conntrack_peak.get()
        ))
    }
}

/// route_localnet (DNAT to 127.0.0.1 of a packet routed to another address), the route, the
/// rule.
fn setup(ns: &NetNs) -> Result<()> {
    ns.sh("echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && echo 1 > /proc/sys/net/ipv4/conf/lo/route_localnet")?;
    ns.sh(&format!("ip route add {IMDS}/32 dev lo"))?;
    ns.sh(&format!(
        "iptables -t nat -A OUTPUT -d {IMDS}/32 -p tcp --dport 80 -j DNAT --to-destination 127.0.0.1:{PORT}"
    ))?;
    Ok(())
}

/// Leaves the namespace as the phase found it, for the runs after it.
fn teardown(ns: &NetNs) {
    let _ = ns.sh(&format!(
        "iptables -t nat -F OUTPUT; ip route del {IMDS}/32 dev lo; echo 0 > /proc/sys/net/ipv4/conf/all/route_localnet; echo 0 > /proc/sys/net/ipv4/conf/lo/route_localnet"
    ));
}

/// Empties the conntrack table of `ns` (what `conntrack -F` does, without needing it).
pub(super) fn flush(ns: &NetNs) -> Result<()> {
    ns.run(flush_here)??;
    Ok(())
}

/// The entries in `ns`'s conntrack table now.
pub(super) fn count(ns: &NetNs) -> u64 {
    ns.sh("cat /proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// An IPCTNL_MSG_CT_DELETE with no tuple over NETLINK_NETFILTER: the kernel flushes the
/// conntrack table of the calling thread's network namespace, and acknowledges.
fn flush_here() -> io::Result<()> {
    const NETLINK_NETFILTER: i32 = 12;
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    // SAFETY: a plain syscall; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (len, type, flags, seq, pid), then nfgenmsg (family: all, version 0, res_id 0).
    let mut msg = Vec::with_capacity(20);
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    // SAFETY: an all-zero sockaddr_nl is valid; the family is set below.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: our socket, a buffer of msg.len() bytes, and a correctly sized address.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ack = [0u8; 256];
    // SAFETY: our socket and a buffer of ack.len() bytes.
    let n = unsafe { libc::recv(fd.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0) };
    if n < 20 {
        return Err(io::Error::other(
            "no acknowledgement of the conntrack flush",
        ));
    }
    // NLMSG_ERROR (2) carries the errno, 0 for success, after its header.
    let kind = u16::from_ne_bytes([ack[4], ack[5]]);
    let errno = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
    match (kind, errno) {
        (2, 0) => Ok(()),
        (2, e) => Err(io::Error::from_raw_os_error(-e)),
        _ => Err(io::Error::other(
            "an unexpected answer to the conntrack flush",
        )),
    }
}
