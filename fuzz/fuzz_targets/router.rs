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
use spot_sim::scenario::Settings;

#[path = "common.rs"]
mod common;

#[derive(arbitrary::Arbitrary, Debug)]
struct Call {
    method: String,
    path: String,
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
        let Ok(method) = Method::from_bytes(call.method.as_bytes()) else {
            continue;
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(call.path.as_str());
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
