use super::{abba, report::*, BenchArgs};

#[test]
fn reads_wrk_latency_output() {
    let text = "Running 8s test @ http://127.0.0.1:1338/\n  2 threads and 32 connections\n  Latency Distribution\n     50%  226.00us\n     75%  400.00us\n     99%    1.20ms\n  123456 requests in 8.00s, 30.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  Non-2xx or 3xx responses: 5\nRequests/sec:  15432.10\nTransfer/sec:      3.75MB\n";
    let l = parse_wrk(text).expect("parsed");
    assert!((l.rps - 15432.10).abs() < 1e-6);
    assert!((l.p50_us - 226.0).abs() < 1e-6);
    assert!((l.p99_us - 1200.0).abs() < 1e-6);
    assert_eq!(l.errors, 9);
}

#[test]
fn pairs_alternate_which_side_goes_first() {
    assert_eq!(
        abba(5).collect::<Vec<_>>(),
        [true, false, true, false, true]
    );
}

#[test]
fn a_ratio_just_under_the_target_never_prints_as_meeting_it() {
    assert_eq!(fmt_ratio(0.9456), "0.945");
    assert_eq!(fmt_ratio(0.9499), "0.949");
    assert_eq!(fmt_ratio(0.95), "0.950");
    assert_eq!(fmt_ratio(1.0123), "1.012");
}

#[test]
fn five_runs_give_min_median_max() {
    assert_eq!(spread(&[3.0, 1.0, 5.0, 2.0, 4.0]), (1.0, 3.0, 5.0));
}

fn load(rps: f64, errors: u64, wrk_failed: bool) -> Load {
    Load {
        rps,
        p50_us: 100.0,
        p99_us: 900.0,
        errors,
        wrk_failed,
    }
}

#[test]
fn a_row_with_errors_is_flagged_and_meets_no_target() {
    let args = BenchArgs {
        duration: 1,
        warmup: 0,
        connections: 4,
        repeat: 2,
        starts: 1,
        idle_targets: 1,
        max_cgroups: 1,
        bin: None,
        probe: None,
        probe_rate: 0,
        probe_to: None,
    };
    let rows = vec![
        Row {
            setup: "direct",
            mode: Mode::NewConnection,
            runs: vec![load(100.0, 0, false), load(100.0, 0, false)],
            ratios: vec![],
            note: String::new(),
        },
        Row {
            setup: "spot-sim",
            mode: Mode::NewConnection,
            runs: vec![load(99.0, 0, false), load(99.0, 0, true)],
            ratios: vec![0.99, 0.99],
            note: String::new(),
        },
    ];
    let report = render(&Report {
        rows,
        binary_size: 1,
        rss_idle: 1,
        rss_load: 1,
        firsts: vec![0.01],
        servings: vec![0.01],
        attaches: vec![],
        connect_none: (5.0, 9.0),
        connect_attached: (5.0, 9.0),
        max_cgroups: 1,
        kernel: Figures {
            connects: [
                kernel_runs(100, true, &[1100.0, 900.0, 1000.0]),
                kernel_runs(0, true, &[250.0, 240.0, 260.0]),
                kernel_runs(0, false, &[40.0, 41.0, 39.0]),
            ],
            idle_targets: 1,
            idle_cpu_pct: 0.5,
            new_netns_ms: vec![20.0, 30.0, 400.0],
            exec: (900.0, 10),
        },
        startup: {
            let mut st = Startup::default();
            st.add("total: start → first redirected answer", 40.0);
            st.add("total: start → first redirected answer", 60.0);
            st
        },
        machine: "2 × a test CPU".into(),
        dnat: "iptables DNAT: how".into(),
        args: &args,
    });
    assert!(
        report.contains("(connect4), at 100 connects/s: min / median / max of 3 runs of about 500 calls | 900 / 1000 / 1100 ns |  |"),
        "{report}"
    );
    assert!(
        report.contains("as fast as one process connects (20000 connects/s): min / median / max of 3 runs of about 100000 calls | 240 / 250 / 260 ns | ≤ 300 ns (median): met |"),
        "{report}"
    );
    assert!(
        report.contains("another address (connect4), as fast"),
        "{report}"
    );
    assert!(
        report.contains("| total: start → first redirected answer | 50.0 (40.0–60.0) |"),
        "{report}"
    );
    assert!(report.starts_with("Machine: 2 × a test CPU"), "{report}");
    assert!(report.contains("\niptables DNAT: how\n"), "{report}");
    assert!(
        report.contains("| 0.50 % of a core | ≤ 0.3 %: not met |"),
        "{report}"
    );
    assert!(
        report.contains("| 20 / 30 / 400 ms | ≤ 150 ms: met |"),
        "{report}"
    );
    assert!(
        report.contains("| ⚠ spot-sim | new connection per request | 99 (99–99) |"),
        "{report}"
    );
    assert!(report.contains("0, wrk failed |"), "{report}");
    assert!(
        report.contains("| 0.990 | **not met** (errors in the runs) |"),
        "{report}"
    );
    assert!(report.contains("| reference |"), "{report}");
}

/// Runs of the connect-rate probe: `rate` asked (0: full speed), `ns` per call in each.
fn kernel_runs(rate: u32, redirected: bool, ns: &[f64]) -> KernelRuns {
    let (calls, achieved) = if rate == 0 {
        (100_000, 20_000.0)
    } else {
        (500, 100.0)
    };
    KernelRuns {
        asked: rate,
        redirected,
        runs: ns
            .iter()
            .map(|&ns_per_call| KernelRun {
                ns_per_call,
                calls,
                rate: achieved,
                failed: 0,
            })
            .collect(),
    }
}
