//! The IMDS surface through the real redirect: dated versions, doubled slashes, the token
//! before the path, bad input, and a passthrough that lets no spelling of a credential path
//! reach a stand-in "real IMDS" (in a private namespace, on 169.254.169.254 there) that records
//! every request it gets.

use spot_sim_tests::*;

const BASE: &str = "http://169.254.169.254";

/// The versions `/` lists (imds/path.rs), checked against what spot-sim answers.
const SOME_VERSIONS: &[&str] = &["1.0", "2009-04-04", "2016-09-02", "2021-03-23", "latest"];

fn curl(node: &Node, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("{BASE}{path}");
    let mut args = vec!["-s", "--path-as-is", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = curl_in(&node.target, &node.target_ns, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn dated_versions_and_doubled_slashes_answer_and_required_mode_checks_the_token_first() {
    let (node, _run) = node_running!(
        "surface",
        &["--imdsv2", "required", "--interruption-in", "2m"]
    );
    let put = curl(
        &node,
        "/latest/api/token",
        &[
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
        ],
    );
    assert_eq!(put.0, 200);
    let header = format!("X-aws-ec2-metadata-token: {}", put.1);
    let with = ["-H", header.as_str()];
    let versions = curl(&node, "/", &with).1;
    for v in SOME_VERSIONS {
        assert!(versions.lines().any(|l| l == *v), "{v} not in {versions:?}");
        let (status, id) = curl(&node, &format!("/{v}/meta-data/instance-id"), &with);
        assert_eq!((status, id.as_str()), (200, "i-0e5a6b3c9d2f41a78"), "{v}");
        let (status, notice) = curl(
            &node,
            &format!("/{v}/meta-data/spot/instance-action"),
            &with,
        );
        assert_eq!(status, 200, "{v}: {notice}");
        assert!(
            notice.contains("\"action\": \"terminate\""),
            "{v}: {notice}"
        );
    }
    for spelling in [
        "//latest/meta-data/instance-id",
        "/latest//meta-data/instance-id",
        "/2021-03-23//meta-data/instance-id/",
    ] {
        assert_eq!(curl(&node, spelling, &with).0, 200, "{spelling}");
        // Without a token: 401, before the path is even looked at.
        assert_eq!(curl(&node, spelling, &[]).0, 401, "{spelling}");
    }
    assert_eq!(curl(&node, "/nonexistent/../x", &[]).0, 401);
    // Bad input with a token: the 404 page, whatever the spelling.
    let long = format!("/latest/meta-data/{}", "a".repeat(9 * 1024));
    let deep = format!("/latest{}", "/meta-data".repeat(70));
    for bad in [
        long.as_str(),
        deep.as_str(),
        "/latest/meta-data/%2e%2e/instance-id",
        "/latest/meta-data/../meta-data/instance-id",
    ] {
        let (status, body) = curl(&node, bad, &with);
        assert_eq!(status, 404, "{}", &bad[..bad.len().min(60)]);
        assert!(body.contains("<title>404 - Not Found</title>"), "{body}");
    }
}

/// A stand-in real IMDS: tokens, an `iam/` tree, and a record (one path a line, in the file
/// argv[1]) of every GET: the methods of [`standin_imds`]'s handler.
const STANDIN: &str = r#"
    def do_PUT(self):
        self.reply(200, "standin-token")
    def do_GET(self):
        record.write(self.path + "\n")
        if "iam" in self.path.lower():
            return self.reply(200, '{"AccessKeyId": "LEAKED"}')
        self.reply(200, "from-the-real-imds")
"#;

/// Sends every path of the JSON list in argv[1] verbatim, as raw bytes on its own connection
/// (no client library refuses or escapes any of them); prints `status<TAB>"path"<TAB>body`
/// lines, the path as JSON.
const CLIENT: &str = r#"
import json, socket, sys
for path in json.load(open(sys.argv[1])):
    s = socket.create_connection(("169.254.169.254", 80), timeout=5)
    s.sendall(b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "none"
    body = body.decode("utf-8", "replace").replace("\n", " ")[:80]
    print("\t".join([status, json.dumps(path), body]))
"#;

/// The bytes the path rules let through to the passthrough decision and beyond, besides the
/// metadata names' own (`[A-Za-z0-9._:=-]`), plus those hyper refuses outright (space,
/// backtick, `<`, `>`): each is put into names that are otherwise forwarded and into
/// credential names.
const ODD_BYTES: &str = ";\\,'\"!$&()*+@[]{}|^~ `<>";

/// Names that only begin like a credential path.
const PREFIXED: &[&str] = &[
    "meta-data/iamx",
    "meta-data/IAM-x/info",
    "meta-data/iam.old/security-credentials/",
    "meta-data/identity-credentialsx/ec2/info",
    "user-data.bak",
    "USER-DATAx",
    "dynamic/instance-identity/pkcs7x",
    "dynamic/instance-identity/signature.old",
];

/// Whether every byte of `path` is one real metadata names use (or a slash).
fn name_bytes_only(path: &str) -> bool {
    path.bytes()
        .all(|b| b == b'/' || b.is_ascii_alphanumeric() || b"-._:=".contains(&b))
}

/// Credential-bearing paths below a version.
const SECRET_TAILS: &[&str] = &[
    "meta-data/iam/security-credentials/node-role",
    "meta-data/iam/info",
    "meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
    "user-data",
    "dynamic/instance-identity/pkcs7",
    "dynamic/instance-identity/signature",
    "dynamic/instance-identity/rsa2048",
];

/// Spellings of `tail` under `version`: doubled slashes, trailing slash, case, `%` escapes,
/// `.` and `..` steps.
fn variants(version: &str, tail: &str) -> Vec<String> {
    let upper = tail.to_ascii_uppercase();
    let mut out = Vec::new();
    for t in [
        tail.to_string(),
        upper,
        tail.replacen('/', "%2f", 1),
        tail.replacen('a', "%61", 1),
    ] {
        out.push(format!("/{version}/{t}"));
        out.push(format!("//{version}//{}/", t.replace('/', "//")));
        out.push(format!("/{version}/./{t}"));
        out.push(format!("/{version}/meta-data/../{t}"));
    }
    out
}

/// A path that names credentials or user data (IAM, identity credentials, user data) or the
/// instance identity's signatures, in any case.
fn credential_bearing(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| p.contains(w));
    has(&["iam", "identity-credentials", "user-data"]) || has(&["pkcs7", "signature", "rsa2048"])
}

#[test]
fn through_the_redirect_no_spelling_of_a_credential_path_reaches_the_real_imds() {
    root_or_skip!();
    let (cg, target, ns) = cgroup_child_and_ns("leak", "target");
    let dir = OwnedPath::scratch_dir("leak").unwrap();
    let record = dir.join("reached-upstream");
    std::fs::write(&record, "").unwrap();
    let _standin = standin_imds(
        &cg,
        &ns,
        "record = open(sys.argv[1], \"a\", buffering=1)",
        STANDIN,
        &[record.to_str().unwrap()],
    );
    let run = start_run_with(
        &[
            "--cgroup",
            target.to_str().unwrap(),
            // spot-sim runs inside its own target here, as on a node where the real IMDS is
            // only reachable from the pod's namespace.
            "--allow-own-cgroup",
            "--passthrough",
            "--interruption-in",
            "2m",
        ],
        1,
        Some((&target, &ns)),
    );
    // The stand-in answers once it listens.
    let probe = |path: &str| {
        let out = curl_in(&target, &ns, &["-s", &format!("{BASE}{path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for _ in 0..50 {
        if probe("/latest/meta-data/ami-id") == "from-the-real-imds" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut paths = Vec::new();
    for version in [
        "latest",
        "1.0",
        "2009-04-04",
        "2016-09-02",
        "2021-03-23",
        "2021-07-15",
        "LATEST",
    ] {
        for tail in SECRET_TAILS {
            paths.extend(variants(version, tail));
        }
        paths.push(format!("/{version}/meta-data/spot/instance-action"));
    }
    for b in ODD_BYTES.chars() {
        for version in ["latest", "2021-03-23"] {
            paths.push(format!("/{version}/meta-data/ami-id{b}x"));
            paths.push(format!("/{version}/meta-data/iam{b}x/info"));
            paths.push(format!("/{version}/user-data{b}bak"));
        }
    }
    for tail in PREFIXED {
        paths.extend(["latest", "2021-03-23", "1.0"].map(|v| format!("/{v}/{tail}")));
    }
    let list = dir.join("paths");
    std::fs::write(&list, serde_json::to_string(&paths).unwrap()).unwrap();
    let out = command_in(
        &target,
        &ns,
        "python3",
        &["-c", CLIENT, list.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let answers = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client: {}\nspot-sim:\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.log()
    );
    assert_eq!(answers.lines().count(), paths.len(), "{answers}");
    for line in answers.lines() {
        let mut f = line.splitn(3, '\t');
        let (status, path, body) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap_or(""));
        let path: String = serde_json::from_str(path).unwrap();
        assert!(
            !body.contains("LEAKED") && !body.contains("from-the-real-imds"),
            "{line}"
        );
        if path.ends_with("/meta-data/spot/instance-action") && !path.contains("LATEST") {
            assert_eq!(status, "200", "{line}");
            assert!(
                body.contains("\"action\": \"terminate\""),
                "simulated: {line}"
            );
        }
    }
    let reached = std::fs::read_to_string(&record).unwrap();
    let leaked: Vec<&str> = reached
        .lines()
        .filter(|p| credential_bearing(p) || !name_bytes_only(p))
        .collect();
    assert!(leaked.is_empty(), "reached the real IMDS: {leaked:?}");
    assert!(!reached.contains("spot"), "spot/ was forwarded: {reached}");
    assert!(
        reached.lines().any(|l| l == "/latest/meta-data/ami-id"),
        "{reached}"
    );
    drop(run);
}
