//! The whole surface as real clients ask for it: every catalogue path under every API version,
//! path spellings (doubled slashes, trailing slashes), the token before the path, listings that
//! list exactly what answers, and a passthrough that lets no spelling of a credential path
//! reach a stand-in upstream on 127.0.0.1 that records every request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};

use super::path::VERSIONS;
use super::tests::{passthrough_to, serve_on_loopback};
use super::*;
use crate::scenario::{ManualClock, Scenario, Start, Timeline};

/// The notice is out from +480 s (started at once, interruption in 600 s).
fn responder(config: ImdsConfig) -> (Arc<ManualClock>, Arc<Responder>) {
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_795_645_080),
    ));
    let scenario = Scenario {
        start: Start::In(Duration::ZERO),
        interruption_in: Duration::from_secs(600),
        ..Scenario::default()
    };
    let timeline = Timeline::new(scenario, clock.clone());
    let r = Responder::new("surface".into(), timeline, config, clock.clone());
    (clock, r)
}

async fn call(r: &Responder, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = Request::builder().method(Method::GET).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = r.handle(req.body(()).expect("request")).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(r: &Responder, path: &str) -> (StatusCode, String) {
    call(r, path, &[]).await
}

/// The paths issue #10 found missing, plus the ones handlers read.
const PATHS: &[&str] = &[
    "meta-data/ami-id",
    "meta-data/ami-launch-index",
    "meta-data/ami-manifest-path",
    "meta-data/block-device-mapping/",
    "meta-data/block-device-mapping/ami",
    "meta-data/block-device-mapping/root",
    "meta-data/hostname",
    "meta-data/instance-id",
    "meta-data/instance-type",
    "meta-data/local-hostname",
    "meta-data/local-ipv4",
    "meta-data/mac",
    "meta-data/network/interfaces/macs/",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/device-number",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/interface-id",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/local-hostname",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/local-ipv4s",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/mac",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/owner-id",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/security-group-ids",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/security-groups",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/subnet-id",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/subnet-ipv4-cidr-block",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/vpc-id",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/vpc-ipv4-cidr-block",
    "meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/vpc-ipv4-cidr-blocks",
    "meta-data/placement/availability-zone",
    "meta-data/placement/availability-zone-id",
    "meta-data/placement/region",
    "meta-data/profile",
    "meta-data/reservation-id",
    "meta-data/security-groups",
    "meta-data/services/domain",
    "meta-data/services/partition",
    "meta-data/system",
    "meta-data/spot/instance-action",
    "meta-data/spot/termination-time",
    "meta-data/events/maintenance/scheduled",
    "meta-data/autoscaling/target-lifecycle-state",
    "meta-data/instance-action",
    "meta-data/instance-life-cycle",
    "dynamic/instance-identity/document",
    "dynamic/instance-identity/pkcs7",
    "dynamic/instance-identity/signature",
    "dynamic/instance-identity/rsa2048",
    "dynamic/fws/instance-monitoring",
];

#[tokio::test]
async fn every_catalogue_path_answers_under_latest_and_every_dated_version() {
    let (clock, r) = responder(ImdsConfig::default());
    clock.advance(Duration::from_secs(481));
    for version in VERSIONS {
        for path in PATHS {
            let (status, body) = get(&r, &format!("/{version}/{path}")).await;
            assert_eq!(status, StatusCode::OK, "/{version}/{path}: {body}");
            assert!(!body.is_empty(), "/{version}/{path}");
        }
    }
    // A real instance launched without user data answers 404.
    assert_eq!(get(&r, "/latest/user-data").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&r, "/").await.1, VERSIONS.join("\n"));
    assert_eq!(get(&r, "/2016-09-02/").await.1, "dynamic\nmeta-data");
}

#[tokio::test]
async fn doubled_slashes_answer_as_single_ones() {
    let (_, r) = responder(ImdsConfig::default());
    let id = get(&r, "/latest/meta-data/instance-id").await;
    assert_eq!(id.0, StatusCode::OK);
    for spelling in [
        "//latest/meta-data/instance-id",
        "/latest//meta-data/instance-id",
        "/latest/meta-data//instance-id",
        "//2021-03-23//meta-data/instance-id/",
    ] {
        assert_eq!(get(&r, spelling).await, id, "{spelling}");
    }
    assert_eq!(
        get(&r, "/latest//meta-data/").await,
        get(&r, "/latest/meta-data/").await
    );
}

#[tokio::test]
async fn required_mode_answers_401_before_it_looks_at_the_path() {
    let config = ImdsConfig {
        imdsv2: Imdsv2Mode::Required,
        ..ImdsConfig::default()
    };
    let (_, r) = responder(config);
    for path in [
        "//latest/meta-data/instance-id",
        "/nonexistent",
        "/latest/meta-data/../x",
        "/latest/meta-data/%2e%2e/",
        "/",
    ] {
        assert_eq!(get(&r, path).await.0, StatusCode::UNAUTHORIZED, "{path}");
        let bad = call(&r, path, &[("x-aws-ec2-metadata-token", "forged")]).await;
        assert_eq!(
            bad.0,
            StatusCode::UNAUTHORIZED,
            "{path} with a forged token"
        );
    }
}

/// Every name a listing shows answers 200, recursively: listings list exactly what is served.
async fn walk(r: &Responder, dir: &str, seen: &mut usize) {
    let (status, listing) = get(r, dir).await;
    assert_eq!(status, StatusCode::OK, "{dir}");
    for name in listing.lines() {
        *seen += 1;
        let path = format!("{dir}{name}");
        // The version level lists directories without a slash, as EC2 does.
        let version_level = dir.matches('/').count() == 2;
        if name.ends_with('/') || (version_level && name != "user-data") {
            let path = if name.ends_with('/') {
                path
            } else {
                format!("{path}/")
            };
            Box::pin(walk(r, &path, seen)).await;
        } else {
            let (status, _) = get(r, &path).await;
            assert_eq!(status, StatusCode::OK, "{path} is listed but not served");
        }
    }
}

#[tokio::test]
async fn listings_list_exactly_what_is_served_in_each_phase() {
    let mut config = ImdsConfig::default();
    config.metadata.user_data = Some("#!/bin/sh\necho hi\n".into());
    let (clock, r) = responder(config);
    let mut before = 0;
    walk(&r, "/2021-07-15/", &mut before).await;
    clock.advance(Duration::from_secs(481));
    let mut after = 0;
    walk(&r, "/latest/", &mut after).await;
    assert!(after > before && before > 50, "{before} then {after}");
    assert_eq!(get(&r, "/latest/").await.1, "dynamic\nmeta-data\nuser-data");
    assert_eq!(get(&r, "/1.0/user-data").await.1, "#!/bin/sh\necho hi\n");
}

#[tokio::test]
async fn set_values_follow_through_and_an_empty_one_hides_its_path() {
    let mut config = ImdsConfig::default();
    let m = &mut config.metadata;
    m.values.insert("public-ipv4".into(), "203.0.113.25".into());
    m.values.insert("subnet-id".into(), "subnet-0123".into());
    m.values.insert("system".into(), String::new());
    let mac = m.mac.clone();
    let (_, r) = responder(config);
    assert_eq!(
        get(&r, "/latest/meta-data/public-ipv4").await.1,
        "203.0.113.25"
    );
    assert_eq!(
        get(&r, "/latest/meta-data/public-hostname").await.1,
        "ec2-203-0-113-25.compute-1.amazonaws.com"
    );
    assert_eq!(
        get(
            &r,
            &format!("/latest/meta-data/network/interfaces/macs/{mac}/subnet-id")
        )
        .await
        .1,
        "subnet-0123"
    );
    assert_eq!(
        get(&r, "/latest/meta-data/system").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(!get(&r, "/latest/meta-data/").await.1.contains("system"));
}

#[tokio::test]
async fn a_key_pair_is_listed_the_way_ec2_lists_it() {
    let mut config = ImdsConfig::default();
    config
        .metadata
        .values
        .insert("public-key".into(), "ssh-ed25519 AAAAC3Nz test".into());
    config
        .metadata
        .values
        .insert("public-key-name".into(), "ops".into());
    let (_, r) = responder(config);
    assert_eq!(get(&r, "/latest/meta-data/public-keys/").await.1, "0=ops");
    assert_eq!(
        get(&r, "/latest/meta-data/public-keys/0/").await.1,
        "openssh-key"
    );
    assert_eq!(
        get(&r, "/2009-04-04/meta-data/public-keys/0/openssh-key")
            .await
            .1,
        "ssh-ed25519 AAAAC3Nz test"
    );
    let (_, plain) = responder(ImdsConfig::default());
    assert_eq!(
        get(&plain, "/latest/meta-data/public-keys/").await.0,
        StatusCode::NOT_FOUND,
        "no key pair, no public-keys/"
    );
}

#[tokio::test]
async fn the_signed_forms_parse_and_carry_no_signer() {
    let (_, r) = responder(ImdsConfig::default());
    let doc = get(&r, "/latest/dynamic/instance-identity/document")
        .await
        .1;
    for form in ["pkcs7", "rsa2048"] {
        let body = get(&r, &format!("/latest/dynamic/instance-identity/{form}"))
            .await
            .1;
        assert!(body.lines().all(|l| l.len() <= 64), "{form}");
        let pem = format!("-----BEGIN PKCS7-----\n{body}\n-----END PKCS7-----\n");
        let Ok(out) = std::process::Command::new("openssl")
            .args(["pkcs7", "-print"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().expect("stdin").write_all(pem.as_bytes())?;
                c.wait_with_output()
            })
        else {
            eprintln!("openssl is not installed; skipping the parse of {form}");
            continue;
        };
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{form}: {printed}");
        assert!(printed.contains("signer_info:\n      <EMPTY>"), "{printed}");
        assert!(printed.contains("pkcs7-signedData"), "{printed}");
        // The document itself is in there, as in EC2's.
        assert!(
            printed.contains("\"accountId\""),
            "{form} lacks the document {doc}"
        );
    }
    let signature = get(&r, "/latest/dynamic/instance-identity/signature")
        .await
        .1;
    assert_eq!(
        signature.replace('\n', "").len(),
        172,
        "128 bytes in base64"
    );
}

// --- passthrough: nothing credential-bearing reaches upstream ---

#[derive(Default)]
struct Seen {
    paths: Vec<String>,
}

async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let addr = serve_on_loopback(move |req: Request<hyper::body::Incoming>| {
        let s = s.clone();
        async move {
            let path = req.uri().path().to_string();
            let body = if path == "/latest/api/token" {
                "upstream-token".to_string()
            } else {
                s.lock().expect("lock").paths.push(path.clone());
                if path.contains("iam") {
                    "{\"AccessKeyId\": \"LEAKED\"}".to_string()
                } else {
                    "from-upstream".to_string()
                }
            };
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }
    })
    .await;
    (addr, seen)
}

/// Spellings of `tail` below `version`: doubled slashes, trailing slash, case, percent-escapes,
/// `.` and `..` steps.
pub(crate) fn variants(version: &str, tail: &str) -> Vec<String> {
    let upper = tail.to_ascii_uppercase();
    let mut first_upper = tail.to_string();
    if let Some(c) = first_upper.get_mut(..1) {
        c.make_ascii_uppercase();
    }
    let encoded_slash = tail.replacen('/', "%2f", 1);
    let encoded_letter = tail.replacen('a', "%61", 1);
    let mut out = Vec::new();
    for t in [tail, &upper, &first_upper, &encoded_slash, &encoded_letter] {
        for v in [version.to_string(), format!("{version}/")] {
            out.push(format!("/{v}/{t}"));
            out.push(format!("//{v}/{t}/"));
            out.push(format!("/{v}//{}", t.replace('/', "//")));
            out.push(format!("/{v}/./{t}"));
            out.push(format!("/{v}/meta-data/../{t}"));
            out.push(format!("/{v}/x/../{t}/"));
        }
    }
    out
}

/// Credential-bearing tails below a version.
pub(crate) const SECRET_TAILS: &[&str] = &[
    "meta-data/iam/security-credentials/node-role",
    "meta-data/iam/info",
    "meta-data/iam/",
    "meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
    "meta-data/identity-credentials/ec2/info",
    "user-data",
    "dynamic/instance-identity/pkcs7",
    "dynamic/instance-identity/signature",
    "dynamic/instance-identity/rsa2048",
];

pub(crate) fn credential_bearing(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    [
        "iam",
        "identity-credentials",
        "user-data",
        "pkcs7",
        "signature",
        "rsa2048",
    ]
    .iter()
    .any(|s| p.contains(s))
}

#[tokio::test]
async fn no_spelling_of_a_credential_path_reaches_upstream_and_spot_is_always_simulated() {
    let (addr, seen) = recording_upstream().await;
    let config = passthrough_to(addr, Duration::from_secs(2));
    let (_, r) = responder(config);
    let mut asked = 0;
    for version in VERSIONS.iter().copied().chain(["LATEST", "2099-01-01"]) {
        for tail in SECRET_TAILS {
            for path in variants(version, tail) {
                asked += 1;
                let (status, body) = get(&r, &path).await;
                assert!(!body.contains("LEAKED"), "{path} leaked: {body}");
                assert_ne!(body, "from-upstream", "{path} was forwarded");
                assert!(
                    status == StatusCode::NOT_FOUND || status == StatusCode::OK,
                    "{path}: {status}"
                );
            }
        }
        // spot/ is ours under every version, never upstream's.
        if VERSIONS.contains(&version) {
            let (status, body) =
                get(&r, &format!("/{version}/meta-data/spot/instance-action")).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{version}: no notice yet, got {body}"
            );
        }
    }
    assert!(asked > 5000, "{asked} variants");
    // What is not credential-bearing is forwarded, with the path rules applied.
    assert_eq!(
        get(&r, "//2021-03-23//meta-data/instance-id").await.1,
        "from-upstream"
    );
    let seen = seen.lock().expect("lock");
    let leaked: Vec<&String> = seen
        .paths
        .iter()
        .filter(|p| credential_bearing(p))
        .collect();
    assert!(leaked.is_empty(), "reached upstream: {leaked:?}");
    assert!(
        seen.paths
            .contains(&"/2021-03-23/meta-data/instance-id".to_string()),
        "{:?}",
        seen.paths
    );
    assert!(
        !seen.paths.iter().any(|p| p.contains("spot")),
        "{:?}",
        seen.paths
    );
}

#[tokio::test]
async fn with_allow_credentials_they_are_forwarded_by_their_canonical_path() {
    let (addr, seen) = recording_upstream().await;
    let config = ImdsConfig {
        allow_credentials: true,
        ..passthrough_to(addr, Duration::from_secs(2))
    };
    let (_, r) = responder(config);
    let (_, body) = get(&r, "//2021-03-23//meta-data/iam/info").await;
    assert!(body.contains("LEAKED"), "{body}");
    assert_eq!(
        seen.lock().expect("lock").paths,
        ["/2021-03-23/meta-data/iam/info"]
    );
}

#[test]
fn the_scenario_sets_any_catalogue_value_and_user_data_from_a_file() {
    use crate::settings::Settings;
    let dir = std::env::temp_dir().join(format!("spot-sim-surface-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("boot.sh"), "#!/bin/sh\necho from-file\n").expect("write");
    let scenario = dir.join("spot.toml");
    let toml = "[metadata]\nsubnet-id = \"subnet-0abc\"\npartition-number = 2\nuser-data-file = \"boot.sh\"\n";
    let s = Settings::from_toml(&scenario, toml).expect("valid");
    assert_eq!(s.imds.metadata.values["subnet-id"], "subnet-0abc");
    assert_eq!(s.imds.metadata.values["partition-number"], "2");
    assert_eq!(
        s.imds.metadata.user_data.as_deref(),
        Some("#!/bin/sh\necho from-file\n")
    );
    let e = Settings::from_toml(&scenario, "[metadata]\nsubnet-idd = \"x\"\n")
        .expect_err("unknown key")
        .to_string();
    assert!(
        e.contains("metadata.subnet-idd") && e.contains("subnet-id"),
        "{e}"
    );
    let e = Settings::from_toml(&scenario, "[metadata]\nuser-data-file = \"nope\"\n")
        .expect_err("missing file")
        .to_string();
    assert!(e.contains("user-data-file") && e.contains("nope"), "{e}");
    // Outside the scenario's directory (issue #20): refused, whatever it is.
    let e = Settings::from_toml(&scenario, "[metadata]\nuser-data-file = \"/dev/zero\"\n")
        .expect_err("outside")
        .to_string();
    assert!(e.contains("outside the scenario file's directory"), "{e}");
    let e = Settings::from_toml(&scenario, "[metadata]\nuser-data-file = \"../x/boot.sh\"\n")
        .expect_err("outside")
        .to_string();
    assert!(e.contains("outside the scenario file's directory"), "{e}");
    // A FIFO beside it: refused at once, not waited on.
    nix::unistd::mkfifo(
        &dir.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let started = std::time::Instant::now();
    let e = Settings::from_toml(&scenario, "[metadata]\nuser-data-file = \"fifo\"\n")
        .expect_err("fifo")
        .to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(
        e.contains("FIFO") && e.contains("not a regular file"),
        "{e}"
    );
    std::fs::write(dir.join("big"), vec![b'x'; 20_000]).expect("write");
    let e = Settings::from_toml(&scenario, "[metadata]\nuser-data-file = \"big\"\n")
        .expect_err("too big")
        .to_string();
    assert!(e.contains("16384"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether `path` can be a request's path at all (hyper refuses what a URI cannot hold: a
/// space, control bytes, `"`, ...): what it refuses never reaches the responder.
fn request_path_ok(path: &[u8]) -> bool {
    hyper::Uri::try_from(path).is_ok_and(|u| u.path().as_bytes() == path)
}

#[tokio::test]
async fn no_name_outside_the_metadata_byte_set_and_no_prefixed_credential_name_reaches_upstream() {
    let (addr, seen) = recording_upstream().await;
    let (_, r) = responder(passthrough_to(addr, Duration::from_secs(2)));
    // Every byte but the path's own delimiters (`/`, and `?`/`#`, which end it), in a name
    // that is otherwise forwarded, and in credential names.
    let mut tried = Vec::new();
    for b in (0u8..=255).filter(|b| !b"/?#".contains(b)) {
        let allowed = b.is_ascii_alphanumeric() || b"-._:=".contains(&b);
        for (head, tail) in [
            (&b"/latest/meta-data/instance-id"[..], &b""[..]),
            (b"/2021-03-23/meta-data/placement/region", b"x"),
            (b"/latest/meta-data/iam", b"x/info"),
            (b"/latest/user-data", b"bak"),
            (b"/latest/dynamic/instance-identity/pkcs7", b""),
        ] {
            let path = [head, &[b], tail].concat();
            if !request_path_ok(&path) {
                continue;
            }
            let text = String::from_utf8_lossy(&path).into_owned();
            let (status, body) = get(&r, &text).await;
            let forwarded = body == "from-upstream" || body.contains("LEAKED");
            let credential = credential_bearing(&text);
            assert_eq!(
                forwarded,
                allowed && !credential,
                "{text:?} ({status}): forwarded {forwarded}"
            );
            if !allowed {
                tried.push(b);
            }
        }
    }
    // These reach the policy (and none got through); a space, a backtick or `<>` cannot be
    // in a request's path at all (hyper answers 400: imds_surface.rs sends them raw).
    for b in b";\\,'\"!$&()*+@[]{}|^~" {
        assert!(
            tried.contains(b),
            "{:?} never reached the responder",
            *b as char
        );
    }
    for b in b" `<>" {
        assert!(!tried.contains(b), "{:?} reached the responder", *b as char);
    }
    // Names that only begin like a credential path are refused as it is, in any case.
    for tail in [
        "meta-data/iamx",
        "meta-data/IAM-x/info",
        "meta-data/iam.old/security-credentials/",
        "meta-data/identity-credentialsx/ec2/info",
        "user-data.bak",
        "USER-DATAx",
        "dynamic/instance-identity/pkcs7x",
        "dynamic/instance-identity/signature.old",
        "dynamic/instance-identity/RSA2048-x",
    ] {
        for version in ["latest", "2021-03-23", "1.0"] {
            let path = format!("/{version}/{tail}");
            let (_, body) = get(&r, &path).await;
            assert_ne!(body, "from-upstream", "{path} was forwarded");
            assert!(!body.contains("LEAKED"), "{path} leaked: {body}");
        }
    }
    {
        let seen = seen.lock().expect("lock");
        let name_bytes = |p: &str| {
            p.bytes()
                .all(|b| b == b'/' || b.is_ascii_alphanumeric() || b"-._:=".contains(&b))
        };
        let leaked: Vec<&String> = seen
            .paths
            .iter()
            .filter(|p| credential_bearing(p) || !name_bytes(p))
            .collect();
        assert!(leaked.is_empty(), "reached upstream: {leaked:?}");
    }
    // The byte set itself is forwarded: a MAC's `:` and a key's `=` are real names.
    for path in [
        "/latest/meta-data/network/interfaces/macs/0e:3f:5a:91:c2:7d/vpc-id",
        "/latest/meta-data/public-keys/0=ops",
    ] {
        assert_eq!(get(&r, path).await.1, "from-upstream", "{path}");
    }
}
