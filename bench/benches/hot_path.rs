//! Criterion micro-benchmarks of the sidecar's hot path, on the bench policy set (1,000 clients,
//! 200 tools, 2,000 policies, RS256 + ES256 issuers served on 127.0.0.1):
//!
//! ```text
//! jsonrpc/parse+route ─► auth/{rs256,es256}/{cold,cached} ─► policy/decide ─► quota/check
//!   ─► audit/prepare (OCSF encoding) ─► audit/append_written (encoding + spool, ack: written)
//!   tools_list/filter_1000 (1,000 listed, 200 declared)
//! ```
//!
//! `cargo bench -p mcp-warden-bench --bench hot_path` (bench/run.sh pins it to one CPU). Each
//! benchmark also prints its heap allocations per operation (a counting global allocator).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use jiff::Timestamp;
use mcp_warden_bench::{
    alloc_count::{self, Counting},
    audit_load, fixture, issuer,
    upstream::Upstream,
};
use mcp_warden_policy::{Call, Kind, ObjectRef, RuleSet, authenticate, decide};
use mcp_warden_sidecar::{
    audit::{AuditConfig, Auditor, Redaction},
    auth::{AuthConfig, Authenticator},
    proxy::{filter::filter_list, jsonrpc},
    quota::{QuotaConfig, Quotas},
    source::file::{Selection, load_config},
};
use std::{hint::black_box, time::Duration};

/// Counts allocations: each benchmark also prints its allocations per operation.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A criterion benchmark, then its heap allocations per operation (`allocations: <name>: <n>`,
/// read by the report).
fn bench<R>(c: &mut Criterion, name: &str, mut op: impl FnMut() -> R) {
    c.bench_function(name, |b| b.iter(&mut op));
    let per_op = alloc_count::per_op(1_000, &mut op);
    #[allow(clippy::print_stdout)] // the report reads it from the bench output
    {
        println!("{}", alloc_count::line(name, per_op));
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    rules: RuleSet,
    tokens: Vec<String>,
    rt: tokio::runtime::Runtime,
}

/// The fixture in a temp folder, its issuers served from a background thread, the RuleSet.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let params = fixture::Params::on_free_ports(
        1_000,
        200,
        2_000,
        "http://127.0.0.1:9401/mcp",
        "http://127.0.0.1:9402/mcp",
    );
    fixture::generate(dir.path(), &params).unwrap();
    let issuers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("issuers.json")).unwrap())
            .unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(issuer::serve(&issuers))
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let (_, rules) = load_config(&dir.path().join("config"), &Selection::OnlyTool).unwrap();
    let tokens = std::fs::read_to_string(dir.path().join("tokens.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Setup {
        _dir: dir,
        rules,
        tokens,
        rt,
    }
}

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let rules = &s.rules;

    bench(c, "jsonrpc/parse+route tools/call", || {
        let payload = jsonrpc::parse(black_box(CALL)).unwrap();
        let msg = &payload.messages()[0];
        let tool = msg.param_str("name").unwrap();
        black_box((msg.method().map(str::len), rules.entry(tool).is_some()))
    });

    for (alg, token) in [("rs256", &s.tokens[0]), ("es256", &s.tokens[1])] {
        let headers = bearer(token);
        let cold = Authenticator::with_config(AuthConfig {
            cache_capacity: 0,
            ..AuthConfig::default()
        });
        let cached = Authenticator::new();
        for a in [&cold, &cached] {
            s.rt.block_on(a.authenticate(rules, &headers, None, Timestamp::now()))
                .expect("the fixture token verifies");
        }
        bench(c, &format!("auth/{alg}/cold (signature verified)"), || {
            s.rt.block_on(cold.authenticate(rules, &headers, None, Timestamp::now()))
                .unwrap()
        });
        bench(c, &format!("auth/{alg}/cached"), || {
            s.rt.block_on(cached.authenticate(rules, &headers, None, Timestamp::now()))
                .unwrap()
        });
    }

    let principal =
        s.rt.block_on(Authenticator::new().authenticate(
            rules,
            &bearer(&s.tokens[0]),
            None,
            Timestamp::now(),
        ))
        .unwrap()
        .principal
        .clone();
    bench(
        c,
        "policy/decide tools/call (1,000 clients, 2,000 policies)",
        || {
            let d = decide(
                rules,
                black_box(&principal),
                Call::Tool("echo"),
                Timestamp::now(),
            );
            assert!(d.is_allowed());
            d
        },
    );

    let quotas = Quotas::new(QuotaConfig::default(), &prometheus::Registry::new()).unwrap();
    quotas.update(rules);
    let client = ObjectRef::new(Kind::McpClient, "bench", "bench-client-0000");
    let policy = ObjectRef::new(Kind::McpPolicy, "bench", "bench-policy-0000");
    bench(c, "quota/check (client rate + daily, policy rate)", || {
        futures::executor::block_on(quotas.check(rules, &client, &policy, "echo", Timestamp::now()))
    });

    let list = Upstream::new(1_000)
        .answer(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .unwrap();
    let result: serde_json::Value = serde_json::from_str(&list).unwrap();
    let result = result["result"].to_string();
    let now = Timestamp::now();
    let caller = authenticate(rules, &principal, now).unwrap();
    bench(c, "tools_list/filter 1,000 tools (200 declared)", || {
        filter_list(black_box(&result), "tools", "name", false, |n| {
            caller.lists(n)
        })
    });

    let audit_dir = tempfile::tempdir().unwrap();
    let cfg_path = audit_load::write_config(audit_dir.path(), "written").unwrap();
    let cfg = AuditConfig::from_yaml(&std::fs::read_to_string(cfg_path).unwrap()).unwrap();
    let auditor =
        s.rt.block_on(async { Auditor::start(&cfg, &prometheus::Registry::new()) });
    let auditor = auditor.unwrap();
    let event = audit_load::call_event(1);
    let redaction = Redaction::none();
    bench(c, "audit/prepare (OCSF record encoding)", || {
        auditor.recorder().prepare(black_box(&event), &redaction)
    });
    bench(c, "audit/append (encoding + spool, ack: written)", || {
        s.rt.block_on(auditor.record(&event, &redaction)).unwrap()
    });
    s.rt.block_on(auditor.shutdown(Duration::from_secs(2)));
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = benches
}
criterion_main!(hot_path);
