//! Micro-benchmarks of the fake IMDS without sockets: one request through the router (what every
//! handler poll costs besides the network), and the IMDSv2 token store under concurrency.
//! `cargo bench -p spot-sim`; `cargo xtask bench` measures the whole path with real clients.
#![allow(
    clippy::unwrap_used,
    reason = "benchmark setup; a failure should stop the run"
)]

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hyper::{Method, Request};
use spot_sim::{
    imds::{ImdsConfig, Responder, TokenStore},
    scenario::{ManualClock, Scenario, Timeline},
};

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_645_080)
}

fn responder() -> Arc<Responder> {
    let clock = Arc::new(ManualClock::new(start()));
    let timeline = Timeline::new(Scenario::default(), clock.clone());
    Responder::new("bench".into(), timeline, ImdsConfig::default(), clock)
}

fn get(path: &str, token: Option<&str>) -> Request<()> {
    let mut b = Request::builder().method(Method::GET).uri(path);
    if let Some(t) = token {
        b = b.header("x-aws-ec2-metadata-token", t);
    }
    b.body(()).unwrap()
}

fn request_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = responder();
    let token_req = || {
        Request::builder()
            .method(Method::PUT)
            .uri("/latest/api/token")
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .body(())
            .unwrap()
    };
    let token = rt.block_on(async {
        let resp = r.handle(token_req()).await;
        String::from_utf8(
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    });

    let mut g = c.benchmark_group("responder");
    g.throughput(Throughput::Elements(1));
    g.bench_function("GET instance-action (IMDSv1)", |b| {
        b.iter_batched(
            || get("/latest/meta-data/spot/instance-action", None),
            |req| rt.block_on(r.handle(req)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("GET instance-id (IMDSv2 token)", |b| {
        b.iter_batched(
            || get("/latest/meta-data/instance-id", Some(&token)),
            |req| rt.block_on(r.handle(req)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("PUT api/token", |b| {
        b.iter_batched(
            token_req,
            |req| rt.block_on(r.handle(req)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// `threads` threads, each issuing one token and checking it `checks` times, in parallel.
fn token_round(store: &TokenStore, threads: usize, checks: usize) {
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let t = store.issue(start(), Duration::from_secs(600));
                for _ in 0..checks {
                    assert!(store.check(&t, start()).is_ok());
                }
            });
        }
    });
}

fn token_store(c: &mut Criterion) {
    let mut g = c.benchmark_group("token store");
    for threads in [1usize, 4, 16] {
        // A store as full as a busy node's: lookups go through a large map, issues evict.
        let store = TokenStore::default();
        for _ in 0..10_000 {
            store.issue(start(), Duration::from_secs(600));
        }
        let checks = 1000;
        g.throughput(Throughput::Elements((threads * (checks + 1)) as u64));
        g.bench_function(
            format!("{threads} threads: issue + {checks} checks each"),
            |b| b.iter(|| token_round(&store, threads, checks)),
        );
    }
    g.finish();
}

criterion_group!(benches, request_path, token_store);
criterion_main!(benches);
