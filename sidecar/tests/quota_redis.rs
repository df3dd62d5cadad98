//! Cluster-wide quotas against a real `redis-server` (Debian's, installed by `make peers`),
//! started on a random loopback port for each test: two `Quotas` instances stand for two
//! sidecar replicas of one governed server.

mod quota_support;

use jiff::Timestamp;
use mcp_warden_policy::RuleSet;
use mcp_warden_sidecar::quota::{
    FailMode, LimitKind, QuotaConfig, QuotaOutcome, Quotas, RedisConfig,
    resp::{Reply, encode, parse},
};
use mcp_warden_test_support::{free_port, peer, repo_root};
use prometheus::{Encoder, Registry, TextEncoder};
use quota_support::*;
use serde_json::json;
use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `redis-server` of this test, on 127.0.0.1, stopped by its PID on drop.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let port = free_port();
        let mut redis = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        redis.restart();
        redis
    }

    /// (Re)starts the server on the same port, waiting (at most 5 s) until it answers.
    fn restart(&mut self) {
        let child = Command::new(peer("PEERS_REDIS_SERVER"))
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer on port {} within 5 s",
            self.port
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command on a fresh connection.
    async fn cmd(&self, args: &[&str]) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connects");
        let mut out = Vec::new();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        encode(&args, &mut out);
        stream.write_all(&out).await.expect("writes");
        let mut buf = Vec::new();
        for _ in 0..1000 {
            if let Some((reply, _)) = parse(&buf).expect("RESP") {
                return reply;
            }
            assert!(
                stream.read_buf(&mut buf).await.expect("reads") > 0,
                "closed"
            );
        }
        panic!("no complete reply")
    }

    /// `calls=` of `cmdstat_<command>` in `INFO commandstats`.
    async fn command_calls(&self, command: &str) -> u64 {
        let Reply::Bulk(Some(info)) = self.cmd(&["INFO", "commandstats"]).await else {
            panic!("INFO answered something else")
        };
        let info = String::from_utf8(info).expect("text");
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn replica(redis: &Redis, mode: FailMode, replicas: u32) -> (Arc<Quotas>, Registry) {
    let mut cfg = RedisConfig::new(redis.url().parse().expect("redis URL"));
    cfg.fail_mode = mode;
    cfg.replicas = replicas;
    cfg.probe_interval = Duration::from_millis(100);
    cfg.timeout = Duration::from_millis(500);
    let registry = Registry::new();
    let quotas = Quotas::new(
        QuotaConfig {
            redis: Some(cfg),
            ..QuotaConfig::default()
        },
        &registry,
    )
    .expect("metrics register");
    (Arc::new(quotas), registry)
}

async fn call(q: &Quotas, rules: &RuleSet, who: &str, tool: &str) -> QuotaOutcome {
    q.check(
        rules,
        &client_ref(who),
        &policy_ref("p"),
        tool,
        Timestamp::now(),
    )
    .await
}

fn metric(registry: &Registry, line_start: &str) -> f64 {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encodes");
    let text = String::from_utf8(out).expect("utf-8");
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

fn budget_rules(daily: u64, extra: serde_json::Value) -> RuleSet {
    let mut quota = json!({"dailyCalls": daily});
    if let (Some(q), Some(e)) = (quota.as_object_mut(), extra.as_object()) {
        q.extend(e.clone());
    }
    rules(
        tool(&[("a", None), ("t", Some(rate(1, "1h", 5)))], None),
        vec![client("bot", quota, &[]), client("free", json!(null), &[])],
        vec![policy("p", &["bot", "free"], &["*"], None, None)],
    )
}

/// Drives `tasks` concurrent callers on each replica, `per_task` calls each; returns the
/// allowed count per replica.
async fn hammer(
    replicas: &[Arc<Quotas>],
    rules: &Arc<RuleSet>,
    tasks: usize,
    per_task: usize,
) -> Vec<usize> {
    let mut handles = Vec::new();
    for (r, q) in replicas.iter().enumerate() {
        for _ in 0..tasks {
            let (q, rules) = (q.clone(), rules.clone());
            handles.push((
                r,
                tokio::spawn(async move {
                    let mut ok = 0;
                    for _ in 0..per_task {
                        match call(&q, &rules, "bot", "a").await {
                            QuotaOutcome::Allowed(_) => ok += 1,
                            QuotaOutcome::Limited(_) => {}
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    ok
                }),
            ));
        }
    }
    let mut allowed = vec![0; replicas.len()];
    for (r, h) in handles {
        allowed[r] += h.await.expect("task");
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_daily_budget_exactly() {
    let redis = Redis::start();
    let (a, _) = replica(&redis, FailMode::FailClosed, 2);
    let (b, rb) = replica(&redis, FailMode::FailClosed, 2);
    let rules = Arc::new(budget_rules(50, json!({})));
    // One call on each replica first: both draw on the one budget whatever the scheduling of
    // the concurrent tasks below (on a loaded machine one replica's tasks may take all the rest).
    assert!(call(&a, &rules, "bot", "a").await.is_allowed());
    assert!(call(&b, &rules, "bot", "a").await.is_allowed());
    let allowed = hammer(&[a, b], &rules, 4, 60).await;
    assert_eq!(
        allowed.iter().sum::<usize>(),
        48,
        "per replica: {allowed:?}"
    );
    // At most one round trip per attempt, 2 + 8 × 60 (exactness: `redis_is_not_asked_when_…`).
    let evalsha = redis.command_calls("evalsha").await;
    assert!((50..=482).contains(&evalsha), "{evalsha}");
    assert!(metric(&rb, "mcp_warden_quota_redis_duration_seconds_count") > 0.0);

    // The counter expires a minute after the UTC day ends. `now` is read before PTTL: the TTL
    // only shrinks, so it is at most the time from `now` to that expiry.
    let key = "mcp-warden:{payments/payments-api/agents/bot}:daily";
    let now_ms = Timestamp::now().as_millisecond();
    let Reply::Int(pttl) = redis.cmd(&["PTTL", key]).await else {
        panic!("PTTL")
    };
    let until_midnight = 86_400_000 - now_ms.rem_euclid(86_400_000);
    assert!(
        pttl > 0 && pttl <= until_midnight + 60_000,
        "{pttl} vs {until_midnight}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_client_rate() {
    let redis = Redis::start();
    let (a, _) = replica(&redis, FailMode::FailClosed, 2);
    let (b, _) = replica(&redis, FailMode::FailClosed, 2);
    // One call per hour, 10 back to back: exactly the burst goes through, across replicas.
    let rules = Arc::new(budget_rules(1000, json!({"rateLimit": rate(1, "1h", 10)})));
    let allowed = hammer(&[a, b], &rules, 3, 40).await;
    assert_eq!(
        allowed.iter().sum::<usize>(),
        10,
        "per replica: {allowed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_is_not_asked_when_the_local_tier_refuses() {
    let redis = Redis::start();
    let (a, registry) = replica(&redis, FailMode::FailClosed, 1);
    let rules = budget_rules(100, json!({"rateLimit": rate(1, "1h", 2)}));
    for _ in 0..2 {
        assert!(call(&a, &rules, "bot", "a").await.is_allowed());
    }
    for _ in 0..5 {
        let o = call(&a, &rules, "bot", "a").await;
        assert_eq!(o.reason(), "client_rate");
    }
    // A client with no shared limit never needs Redis.
    assert!(call(&a, &rules, "free", "a").await.is_allowed());
    assert_eq!(redis.command_calls("evalsha").await, 2);
    assert_eq!(
        metric(&registry, "mcp_warden_quota_redis_duration_seconds_count"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_redis_gives_back_the_local_reservation() {
    let redis = Redis::start();
    let (a, _) = replica(&redis, FailMode::FailClosed, 2);
    let (b, _) = replica(&redis, FailMode::FailClosed, 2);
    let rules = budget_rules(3, json!({}));
    // Replica b spends the shared daily budget.
    for _ in 0..3 {
        assert!(call(&b, &rules, "bot", "a").await.is_allowed());
    }
    // Replica a's local tier passes (it saw none of those calls); Redis refuses 10 calls of
    // tool `t`, whose per-tool cap (5 back to back, local) must not be consumed by them.
    for _ in 0..10 {
        let QuotaOutcome::Limited(l) = call(&a, &rules, "bot", "t").await else {
            panic!("the shared budget is spent")
        };
        assert_eq!(l.reason, LimitKind::ClientDaily);
        assert_eq!(l.remaining, Some(0));
    }
    let o = call(&a, &rules, "free", "t").await;
    let QuotaOutcome::Allowed(allowed) = &o else {
        panic!("{o:?}")
    };
    let tool = allowed
        .limits
        .iter()
        .find(|l| l.kind == LimitKind::ToolRate)
        .expect("tool cap applies");
    assert_eq!(tool.remaining, 4, "only this call counted against tool t");
}

/// Calls until `pred` holds (at most 5 s).
async fn eventually(
    q: &Quotas,
    rules: &RuleSet,
    who: &str,
    pred: impl Fn(&QuotaOutcome) -> bool,
) -> QuotaOutcome {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = call(q, rules, who, "a").await;
        if pred(&o) || Instant::now() > deadline {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_while_redis_is_down_and_recovers_by_itself() {
    let mut redis = Redis::start();
    let (a, registry) = replica(&redis, FailMode::FailClosed, 2);
    let rules = budget_rules(1000, json!({}));
    for _ in 0..3 {
        assert!(call(&a, &rules, "bot", "a").await.is_allowed());
    }
    redis.kill();
    let o = call(&a, &rules, "bot", "a").await;
    let QuotaOutcome::Unavailable(u) = &o else {
        panic!("fail-closed must refuse, got {o:?}")
    };
    assert_eq!(u.retry_after, Duration::from_millis(100));
    assert_eq!(o.http_answer(&json!(1)).expect("refused").status, 503);
    for _ in 0..20 {
        assert!(matches!(
            call(&a, &rules, "bot", "a").await,
            QuotaOutcome::Unavailable(_)
        ));
    }
    // Calls under no shared limit do not need Redis.
    assert!(call(&a, &rules, "free", "a").await.is_allowed());
    assert_eq!(metric(&registry, "mcp_warden_quota_redis_up "), 0.0);
    assert_eq!(
        metric(
            &registry,
            "mcp_warden_quota_redis_transitions_total{state=\"down\"} "
        ),
        1.0
    );
    assert!(
        metric(
            &registry,
            "mcp_warden_quota_redis_errors_total{error=\"io\"} "
        ) >= 1.0
            || metric(
                &registry,
                "mcp_warden_quota_redis_errors_total{error=\"connect\"} "
            ) >= 1.0
    );
    assert!(
        metric(
            &registry,
            "mcp_warden_quota_decisions_total{kind=\"McpClient\",name=\"agents/bot\",reason=\"quota_unavailable\"} "
        ) >= 21.0
    );

    redis.restart();
    let o = eventually(&a, &rules, "bot", QuotaOutcome::is_allowed).await;
    assert!(o.is_allowed(), "recovered within 5 s: {o:?}");
    assert_eq!(metric(&registry, "mcp_warden_quota_redis_up "), 1.0);
    assert_eq!(
        metric(
            &registry,
            "mcp_warden_quota_redis_transitions_total{state=\"up\"} "
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_divides_the_budget_among_replicas_and_recovers_by_itself() {
    let mut redis = Redis::start();
    let (a, ra) = replica(&redis, FailMode::LocalOnly, 2);
    let (b, _) = replica(&redis, FailMode::LocalOnly, 2);
    let rules = budget_rules(20, json!({}));
    for q in [&a, &b] {
        for _ in 0..3 {
            assert!(call(q, &rules, "bot", "a").await.is_allowed());
        }
    }
    redis.kill();
    // Each replica may now make 20 / 2 = 10 calls today, 3 of which it already made.
    let mut during = Vec::new();
    for q in [&a, &b] {
        let mut ok = 0;
        for _ in 0..15 {
            match call(q, &rules, "bot", "a").await {
                QuotaOutcome::Allowed(al) => {
                    ok += 1;
                    assert_eq!(al.limits[0].quota, 10, "the divided budget is advertised");
                }
                QuotaOutcome::Limited(l) => assert_eq!(l.reason, LimitKind::ClientDaily),
                other => panic!("local-only never answers {other:?}"),
            }
        }
        during.push(ok);
    }
    assert_eq!(during, [7, 7], "3 + 7 per replica = the budget of 20");
    assert_eq!(metric(&ra, "mcp_warden_quota_redis_up "), 0.0);

    // Redis comes back empty (no persistence): the shared count starts over, which only a
    // call checked in Redis can allow (locally, replica a has spent its 10).
    redis.restart();
    let o = eventually(&a, &rules, "bot", QuotaOutcome::is_allowed).await;
    let QuotaOutcome::Allowed(al) = &o else {
        panic!("recovered within 5 s: {o:?}")
    };
    assert_eq!(al.limits[0].quota, 20);
    assert_eq!(al.limits[0].remaining, 19, "counted in Redis");
    assert_eq!(metric(&ra, "mcp_warden_quota_redis_up "), 1.0);
}

/// The verified reference script, for a cross-check of the GCRA math.
fn reference_gcra() -> Option<String> {
    std::fs::read_to_string(repo_root().join("tests/peers/reference/ratelimit/gcra.lua")).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_script_agrees_with_the_verified_gcra_script() {
    let Some(reference) = reference_gcra() else {
        panic!("tests/peers/reference/ratelimit/gcra.lua is missing from the repository")
    };
    let redis = Redis::start();
    let ours = mcp_warden_sidecar::quota::CHECK_SCRIPT;
    // 1 per hour (emission 3,600,000 ms), burst 4: both allow 4 with the same remaining
    // counts, then refuse with the same wait (to the Redis clock's millisecond).
    let ints = |r: Reply| match r {
        Reply::Array(Some(v)) => v
            .into_iter()
            .map(|i| match i {
                Reply::Int(n) => n,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<i64>>(),
        other => panic!("{other:?}"),
    };
    // The two keys are hit by separate calls: their clocks differ by at most the time the loop
    // has taken (a few ms on a loaded machine).
    let started = Instant::now();
    for i in 0..6 {
        let theirs = ints(
            redis
                .cmd(&["EVAL", &reference, "1", "ref", "3600000", "4", "1"])
                .await,
        );
        let mine = ints(
            redis
                .cmd(&["EVAL", ours, "1", "ours", "g", "3600000.000000", "4"])
                .await,
        );
        if i < 4 {
            assert_eq!(theirs, [1, 0, 3 - i]);
            assert_eq!(mine[0], 1);
            assert_eq!(mine[1], 3 - i, "remaining");
        } else {
            assert_eq!(theirs[0], 0);
            assert_eq!(mine[..2], [0, 1]);
            let spread = started.elapsed().as_millis() as i64 + 1;
            assert!(
                (theirs[1] - mine[2]).abs() <= spread,
                "{theirs:?} vs {mine:?} after {spread} ms"
            );
        }
    }
}
