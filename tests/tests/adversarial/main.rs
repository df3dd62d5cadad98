//! The sidecar's gate under attack, black box: the real `mcp-warden-sidecar` with the demo's
//! policies (`examples/everything`), real tokens from oidc-provider, and three real upstreams —
//! server-everything (TypeScript SDK), `tests/peers/fixture_server.py` (Python SDK) and
//! `tests/peers/go-server` (mark3labs/mcp-go, whose `encoding/json` folds keys) — each behind a
//! recording tap, so every case asserts what the client saw AND what the upstream received.
//!
//! ```text
//! client (ureq / raw TCP) ──► sidecar ──► tap (records every request) ──► upstream
//!                               └── audit trail (audit.jsonl)
//! ```
//!
//! Expected behaviour: `docs/denials.md` ("One reading", "Answers are read before the client
//! sees them", "Callers without a valid token cost O(1)", revocation of open streams). A scripted
//! hostile upstream covers the answers no real server sends on purpose. Each per-upstream test
//! runs every case and lists them all (PASS/FAIL) before failing.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use http_body_util::BodyExt;
use mcp_warden_test_support::{
    Idp, Proc, oidc_provider, peer_file, poll, repo_root, server_everything,
};
use mcp_warden_tests::{
    cases::Cases,
    ensure,
    procs::{SidecarAddrs, enforced_version, sidecar, workspace_bin},
    tap::{self, Recorded, Tap},
};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// The resource (token audience) of examples/everything.
const RESOURCE: &str = "http://127.0.0.1:9401/mcp";
const VERSION: &str = "2025-06-18";
const ALPHA: &str = "agent-alpha";
const BETA: &str = "agent-beta";
/// agent-alpha's McpClient in examples/everything: `suspended: true` goes after this line.
const ALPHA_LINE: &str = "  description: Demo agent with broad access to the test server.\n";
/// The most the sidecar may hold while refusing a tokenless flood (docs/denials.md: O(1) per
/// caller without a valid token).
const RSS_LIMIT_KIB: u64 = 128 * 1024;

mod floods;
mod gate;
mod hostile;
mod revocation;
mod transport;

use floods::*;
use gate::*;
use revocation::*;
use transport::*;

// ------------------------------------------------------------------------------------------
// Upstreams and the stack
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Everything,
    Python,
    Go,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Everything => "server-everything",
            Kind::Python => "python-fixture",
            Kind::Go => "go-mcp-go",
        }
    }

    /// agent-beta's tools: what its policy grants that the upstream has.
    fn beta_tools(self) -> BTreeSet<String> {
        let names: &[&str] = match self {
            Kind::Python => &["greet"],
            _ => &["echo", "get-sum", "get-tiny-image"],
        };
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A harmless call agent-alpha may make.
    fn good_call(self) -> (&'static str, Value) {
        match self {
            Kind::Python => ("greet", json!({"name": "warden"})),
            _ => ("echo", json!({"message": "hello"})),
        }
    }

    /// A call that streams (SSE) for several seconds, when the upstream has one.
    fn long_call(self) -> Option<(&'static str, Value)> {
        match self {
            Kind::Everything => Some((
                "trigger-long-running-operation",
                json!({"duration": 10, "steps": 10}),
            )),
            Kind::Python => Some(("test_tool_with_progress", json!({"delay_ms": 5000}))),
            Kind::Go => None,
        }
    }
}

struct Upstream {
    _proc: Proc,
    url: String,
    /// The Go server's record file (`{"ran":"<tool>"}` per tool run).
    record: Option<PathBuf>,
}

fn go_server_bin() -> PathBuf {
    peer_file("PEERS_GO_SERVER").unwrap_or_else(|e| {
        panic!(
            "the Go upstream (tests/peers/go-server, mark3labs/mcp-go) is not installed ({e}): \
             build and register it with `scripts/peers.sh go`, which sets PEERS_GO_SERVER in \
             $PEERS_DIR/env.sh"
        )
    })
}

fn go_server(record: &Path) -> (Proc, String) {
    let mut cmd = Command::new(go_server_bin());
    cmd.args(["--listen", "127.0.0.1:0", "--record"])
        .arg(record);
    Proc::spawn("mcp-go-server", cmd, Duration::from_secs(30), |line| {
        line.strip_prefix("listening on ")
            .map(|u| u.trim().to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn python_fixture() -> (Proc, String) {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| {
        panic!("the Python fixture needs the peers' venv with `mcp` ({e}): run `make peers`")
    });
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/peers/fixture_server.py"))
        .arg("0");
    Proc::spawn("fixture_server.py", cmd, Duration::from_secs(60), |line| {
        line.strip_prefix("READY ").map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn start_upstream(kind: Kind, dir: &Path) -> Upstream {
    let (proc, url, record) = match kind {
        Kind::Everything => {
            let (p, u) = server_everything()
                .unwrap_or_else(|e| panic!("server-everything is needed ({e}): run `make peers`"));
            (p, u, None)
        }
        Kind::Python => {
            let (p, u) = python_fixture();
            (p, u, None)
        }
        Kind::Go => {
            let record = dir.join("go-record.jsonl");
            let (p, u) = go_server(&record);
            (p, u, Some(record))
        }
    };
    Upstream {
        _proc: proc,
        url,
        record,
    }
}

/// examples/everything for the live IdP. The Python fixture has none of server-everything's
/// tools: its harmless `greet` is granted to both agents, `test_tool_with_progress` to alpha.
fn config_text(kind: Kind, issuer: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:9400", issuer);
    if kind != Kind::Python {
        return text;
    }
    let edits = [
        (
            "    - name: get-sum\n      risk: Low\n",
            "    - name: get-sum\n      risk: Low\n    - name: greet\n      risk: Low\n    - name: test_tool_with_progress\n      scopes: [mcp:tools.call]\n      risk: Medium\n",
        ),
        (
            "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*]",
            "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*, greet, test_tool_with_progress]",
        ),
        (
            "names: [echo, get-sum, get-tiny-image]",
            "names: [echo, get-sum, get-tiny-image, greet]",
        ),
    ];
    let mut text = text;
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "examples/everything/everything.yaml changed: {from:?} is gone"
        );
        text = text.replacen(from, to, 1);
    }
    text
}

struct Stack {
    kind: Kind,
    sidecar: Proc,
    addrs: SidecarAddrs,
    tap: Tap,
    upstream: Upstream,
    idp: Idp,
    config: PathBuf,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

/// upstream ◄── tap ◄── sidecar (examples/everything, audit to a file) ◄── clients; IdP beside.
fn stack(kind: Kind) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, idp) = thread::scope(|scope| {
        let idp = scope.spawn(|| oidc_provider(RESOURCE, 0));
        let upstream = start_upstream(kind, dir.path());
        let idp = idp
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("oidc-provider is needed ({e}): run `make peers`"));
        (upstream, idp)
    });
    let tap = Tap::start(&upstream.url).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("everything.yaml");
    std::fs::write(&config, config_text(kind, &idp.issuer)).unwrap();
    let audit_dir = dir.path().join("audit");
    let (sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &tap.url(),
        "--audit-dir",
        audit_dir.to_str().unwrap(),
    ])
    .unwrap_or_else(|e| {
        panic!("{e}\n(build the binaries first: `cargo build -p mcp-warden-sidecar --bins`)")
    });
    Stack {
        kind,
        sidecar,
        addrs,
        tap,
        upstream,
        idp,
        config,
        audit: audit_dir.join("audit.jsonl"),
        _dir: dir,
    }
}

impl Stack {
    fn url(&self) -> String {
        format!("{}/mcp", self.addrs.base)
    }

    fn host_port(&self) -> String {
        self.addrs.base.trim_start_matches("http://").to_owned()
    }

    fn token(&self, client: &str) -> String {
        let scope = if client == BETA {
            "mcp:tools.list"
        } else {
            "mcp:tools.list mcp:tools.call"
        };
        self.idp
            .token(client, scope)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn connect(&self, client: &str, version: &str) -> Result<Client, String> {
        Client::connect(&self.url(), Some(self.token(client)), version)
    }

    /// Runs `f`; fails when the upstream received any request meanwhile.
    fn quiet<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
        let mark = self.tap.count();
        let out = f();
        let got = self.tap.since(mark);
        ensure!(
            got.is_empty(),
            "{what}: the upstream received {} request(s) for it: {}",
            got.len(),
            describe(&got)
        );
        Ok(out)
    }

    /// Tool runs the Go server recorded (empty for the other upstreams).
    fn ran(&self) -> Vec<String> {
        self.upstream.record.as_deref().map(ran).unwrap_or_default()
    }
}

fn describe(reqs: &[Recorded]) -> String {
    reqs.iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.body()).into_owned();
            format!(
                "{} {} (session {:?}, {} body bytes: {})",
                r.method,
                r.path,
                r.header("mcp-session-id"),
                r.body_len(),
                clip(&text, 200)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The tools the Go server's record file says ran.
fn ran(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("ran").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn reason(r: &Value) -> &str {
    r.pointer("/unmapped/mcp_warden/decision/reason")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Records of refusals of callers without a valid token (HTTP 401).
fn unauthenticated_records(path: &Path) -> Vec<Value> {
    audit_records(path)
        .into_iter()
        .filter(|r| {
            r.pointer("/http_response/code") == Some(&json!(401)) || reason(r) == "unauthenticated"
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The report: every case runs, all results are listed, then the test fails if any failed
// ------------------------------------------------------------------------------------------

// ------------------------------------------------------------------------------------------
// Cases against a real upstream
// ------------------------------------------------------------------------------------------

fn adversarial(kind: Kind) {
    let s = stack(kind);
    let mut report = Cases::new(kind.name());
    let sent = Instant::now();
    report.case(
        "no token: 1.7 MB batch → 401 id null, not forwarded",
        || unauthenticated_batch(&s),
    );
    report.case(
        "notifications/initialized: the upstream's 202 reaches the client",
        || notifications(&s.url(), s.token(ALPHA), &s.upstream.url),
    );
    report.case(
        "ids 1.0, 1e0, ±2^53 → 400 -32600; id 1 lists exactly beta's tools",
        || ids(&s),
    );
    report.case(
        "folded, duplicate, mistyped governed keys → 400, nothing forwarded",
        || smuggling(&s),
    );
    report.case(
        "batches: one id twice, 101 messages → 400, nothing forwarded",
        || batches(&s),
    );
    report.case(
        "sessions not issued to the caller → 404 -32001, nothing forwarded",
        || fixation(&s),
    );
    report.case(
        "responses to no server request (session or none) → 400, nothing forwarded",
        || responses(&s),
    );
    report.case(
        "Last-Event-ID not issued to this caller and session → 400",
        || last_event_id(&s),
    );
    report.case("audit: the 401 is one aggregated record (count 1)", || {
        tally_record(&s, sent)
    });
    report.case(
        "flood: 64 × 4 MiB without a valid token; RSS < 128 MiB; good caller served",
        || flood(&s),
    );
    report.case(
        "revocation ends open streams within 1 s of the reload",
        || revocation(&s),
    );
    report.case(
        "audit: the flood is counted, not recorded one by one",
        || flood_tally(&s),
    );
    report.case("audit trail verifies (mcp-warden audit verify)", || {
        verify_audit(&s)
    });
    report.finish();
}

#[test]
fn adversarial_server_everything() {
    adversarial(Kind::Everything);
}

#[test]
fn adversarial_python_fixture() {
    adversarial(Kind::Python);
}

#[test]
fn adversarial_go_mcp_go() {
    adversarial(Kind::Go);
}

/// Without the sidecar, mcp-go runs get-env for the smuggled bodies: the cases are real.
#[test]
fn go_server_alone_runs_get_env_for_smuggled_keys() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let (_go, url) = go_server(&record);
    let mut ran_env = Vec::new();
    for (label, body, _) in SMUGGLED {
        let client = Client::connect(&url, None, VERSION).unwrap_or_else(|e| panic!("{e}"));
        let before = ran(&record).len();
        let r = client.post(*body).unwrap();
        if ran(&record)[before..].iter().any(|t| t == "get-env") {
            assert!(r.text().contains("ENV-SECRET"), "{label}: {}", r.summary());
            ran_env.push(*label);
        }
    }
    eprintln!("mcp-go alone runs get-env for: {ran_env:?}");
    for must in [
        "name + Name",
        "name + NAME",
        "duplicate name",
        "params + paramſ (message level)",
    ] {
        assert!(
            ran_env.contains(&must),
            "mcp-go should run get-env for {must:?} (tests/peers/go-server/smuggle_test.go); it did for {ran_env:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// A hostile upstream: answers the sidecar must not pass on as they are
// ------------------------------------------------------------------------------------------
