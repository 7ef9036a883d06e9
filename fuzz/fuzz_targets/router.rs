//! Any request the HTTP layer lets through: the answer IMDS would give, never a panic, never
//! a credential, never a server error when no fault is configured. With passthrough on (to a
//! stand-in upstream on 127.0.0.1 with an `iam/` tree), no credential-bearing request ever
//! reaches upstream and no credential is ever served, unless credentials are allowed.
#![no_main]

use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use libfuzzer_sys::fuzz_target;
use spot_sim::imds::Imdsv2Mode;
use spot_sim::settings::Settings;

#[path = "common.rs"]
mod common;

/// A path segment: the names credential paths are made of, so the fuzzer reaches them at once,
/// or anything at all.
#[derive(arbitrary::Arbitrary, Debug)]
enum Piece {
    Version(u8),
    Name(u8),
    Empty,
    Dot,
    DotDot,
    Escaped(u8),
    Any(String),
}

const NAMES: &[&str] = &[
    "meta-data",
    "iam",
    "security-credentials",
    "info",
    "identity-credentials",
    "ec2",
    "user-data",
    "dynamic",
    "instance-identity",
    "pkcs7",
    "signature",
    "rsa2048",
    "document",
    "spot",
    "instance-action",
    "events",
    "api",
    "token",
];

impl Piece {
    fn render(&self, upper: bool) -> String {
        let s = match self {
            Piece::Version(n) => {
                let v = spot_sim_versions();
                v[usize::from(*n) % v.len()].to_string()
            }
            Piece::Name(n) => NAMES[usize::from(*n) % NAMES.len()].to_string(),
            Piece::Empty => String::new(),
            Piece::Dot => ".".into(),
            Piece::DotDot => "..".into(),
            Piece::Escaped(n) => format!("%{n:02x}"),
            Piece::Any(s) => s.clone(),
        };
        if upper {
            s.to_ascii_uppercase()
        } else {
            s
        }
    }
}

/// A few of the versions the real service lists, and one it does not.
fn spot_sim_versions() -> &'static [&'static str] {
    &["latest", "1.0", "2009-04-04", "2021-03-23", "2022-09-24", "LATEST", "2099-01-01"]
}

#[derive(arbitrary::Arbitrary, Debug)]
struct Call {
    /// GET, as handlers ask; else `method`.
    plain_get: bool,
    method: String,
    path: String,
    /// When not empty, the path is these pieces joined by `/` instead.
    pieces: Vec<(Piece, bool)>,
    trailing_slash: bool,
    headers: Vec<(String, Vec<u8>)>,
    /// Present the token the responder issued first.
    with_token: bool,
    advance_secs: u16,
}

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    required: bool,
    allow_credentials: bool,
    passthrough: bool,
    calls: Vec<Call>,
}

fuzz_target!(|input: Input| {
    let mut settings = Settings::default();
    settings.imds.imdsv2 = if input.required {
        Imdsv2Mode::Required
    } else {
        Imdsv2Mode::Optional
    };
    settings.imds.allow_credentials = input.allow_credentials;
    let upstream = input.passthrough.then(|| common::stand_in());
    let (clock, responder) = common::responder_with(settings, upstream.map(|s| s.addr));
    if let Some(s) = upstream {
        s.seen.lock().expect("the record").clear();
    }
    let rt = common::runtime();
    let token_req = Request::builder()
        .method(Method::PUT)
        .uri("/latest/api/token")
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .body(())
        .expect("a token request");
    let (resp, token) = rt.block_on(common::call(&responder, token_req));
    assert_eq!(resp.status(), 200);
    let token = String::from_utf8(token).expect("an ASCII token");
    for call in input.calls.iter().take(32) {
        clock.advance(Duration::from_secs(call.advance_secs.into()));
        let method = if call.plain_get {
            Method::GET
        } else if let Ok(m) = Method::from_bytes(call.method.as_bytes()) {
            m
        } else {
            continue;
        };
        let built = if call.pieces.is_empty() {
            call.path.clone()
        } else {
            let mut p: String = call
                .pieces
                .iter()
                .take(16)
                .map(|(piece, upper)| format!("/{}", piece.render(*upper)))
                .collect();
            if call.trailing_slash {
                p.push('/');
            }
            p
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(built.as_str());
        for (name, value) in &call.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                req = req.header(n, v);
            }
        }
        if call.with_token {
            req = req.header("x-aws-ec2-metadata-token", token.as_str());
        }
        // Whatever the URI parser refuses, hyper answers 400 before the router sees it.
        let Ok(req) = req.body(()) else {
            continue;
        };
        let path = req.uri().path().to_string();
        let (resp, body) = rt.block_on(common::call(&responder, req));
        let status = resp.status();
        let h = resp.headers();
        assert_eq!(h.get("server").map(|v| v.as_bytes()), Some(&b"EC2ws"[..]));
        let len: usize = h
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .expect("a Content-Length");
        if method == Method::HEAD {
            assert!(body.is_empty());
        } else {
            assert_eq!(len, body.len());
        }
        // A passthrough answer is upstream's; only our own answers must be free of 5xx.
        assert!(
            upstream.is_some() || !status.is_server_error(),
            "{method} {path}: {status}"
        );
        if !input.allow_credentials {
            let served = String::from_utf8_lossy(&body);
            assert!(!served.contains(common::SECRET), "{method} {path} served credentials");
            if let Some(s) = upstream {
                let seen = s.seen.lock().expect("the record");
                let leaked: Vec<&String> =
                    seen.iter().filter(|p| common::credential_bearing(p)).collect();
                assert!(leaked.is_empty(), "{method} {path} reached upstream as {leaked:?}");
            }
        }
        // Refused before any route: 404, unless the token (401) or the method (405) came first.
        if path.contains('%') || path.split('/').any(|s| s == "..") {
            assert!(
                matches!(status.as_u16(), 401 | 404 | 405),
                "{method} {path}: {status}"
            );
        }
        let lower = path.to_ascii_lowercase();
        let segs: Vec<&str> = lower.split('/').filter(|s| !s.is_empty()).collect();
        let credentials = matches!(segs.as_slice(), [_, "meta-data", d, ..]
            if d.starts_with("iam") || d.starts_with("identity-credentials"));
        if credentials && !input.allow_credentials {
            assert_ne!(status, 200, "{method} {path} served credentials");
        }
        // The token is a secret: it is never echoed.
        assert!(
            path == "/latest/api/token"
                || !body.windows(token.len()).any(|w| w == token.as_bytes()),
            "{method} {path} echoed the token"
        );
    }
});
