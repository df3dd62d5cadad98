//! Shared by the `audit_*` integration tests: the OCSF validator, event builders, a real rsyslog,
//! a capturing HTTP server, and readers of the records. Every loop is bounded in count and time;
//! every server binds 127.0.0.1.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

use jiff::Timestamp;
use mcp_warden_crds::Risk;
use mcp_warden_policy::{Capability, Kind, ObjectRef};
use mcp_warden_sidecar::audit::{
    AuditConfig, AuditEvent, ClientInfo, DecisionInfo, DecisionMode, JsonRpcError, Outcome,
    PrincipalInfo, ResponseInfo, ServerInfo, ServerRequestInfo, ToolInfo, TransportInfo,
};
use mcp_warden_test_support::{free_port, peer, repo_root};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

// ---------------------------------------------------------------- OCSF schema and seed fields

/// The OCSF 1.8.0 API Activity schema (profiles ai_operation, trace, security_control,
/// datetime), exported from PyPI `ocsf-json-schema` 1.2.0; draft 2020-12 with formats on.
pub fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let text =
            std::fs::read_to_string(fixture("ocsf/ocsf-1.8.0-api_activity.schema.json")).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the exported schema compiles")
    })
}

/// Schema errors of a record, as `path: message` lines.
pub fn schema_errors(record: &Value) -> Vec<String> {
    validator()
        .iter_errors(record)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn non_empty_str(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// The six seed fields: client identity, tool, input parameters, response status, timestamp,
/// session correlation id. Returns the ones missing.
pub fn missing_seed_fields(v: &Value) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !(non_empty_str(v, "/actor/user/uid") && non_empty_str(v, "/actor/user/name")) {
        missing.push("client identity (actor.user.uid/name)");
    }
    if !(non_empty_str(v, "/api/operation") && non_empty_str(v, "/resources/0/name")) {
        missing.push("tool (api.operation, resources[0].name)");
    }
    if !(v.pointer("/api/request/data").is_some_and(Value::is_object)
        && non_empty_str(v, "/api/request/uid"))
    {
        missing.push("input parameters (api.request.data)");
    }
    if !(v.get("status_id").is_some_and(Value::is_u64)
        && non_empty_str(v, "/status")
        && non_empty_str(v, "/status_code"))
    {
        missing.push("response status (status_id, status, status_code)");
    }
    if !v.get("time").is_some_and(Value::is_i64) {
        missing.push("timestamp (time)");
    }
    if !non_empty_str(v, "/metadata/correlation_uid") {
        missing.push("session correlation id (metadata.correlation_uid)");
    }
    missing
}

/// Asserts a record validates, carries the seed fields and the invariants the schema does not
/// check.
pub fn assert_good_record(v: &Value) {
    let errors = schema_errors(v);
    assert!(
        errors.is_empty(),
        "schema errors:\n{}\nrecord: {v:#}",
        errors.join("\n")
    );
    let missing = missing_seed_fields(v);
    assert!(
        missing.is_empty(),
        "missing seed fields {missing:?} in {v:#}"
    );
    let class = v["class_uid"].as_u64().unwrap();
    let activity = v["activity_id"].as_u64().unwrap();
    assert_eq!(
        v["type_uid"].as_u64().unwrap(),
        class * 100 + activity,
        "type_uid"
    );
    assert_eq!(v["metadata"]["version"], "1.8.0");
    let profiles: Vec<&str> = v["metadata"]["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        profiles,
        ["ai_operation", "trace", "security_control", "datetime"]
    );
    assert!(non_empty_str(v, "/metadata/uid"));
    assert!(v.pointer("/metadata/sequence").is_some_and(Value::is_u64));
}

// ---------------------------------------------------------------- events

pub const SECRET_CARD: &str = "4111111111111111";
pub const SECRET_PASSWORD: &str = "hunter2-correct-horse";
pub const SECRET_SSN: &str = "078-05-1120";
pub const BEARER: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudC1hbHBoYSJ9.c2lnbmF0dXJl";

pub fn objref(kind: Kind, name: &str) -> ObjectRef {
    ObjectRef::new(kind, "payments", name)
}

/// Calls' records as the proxy makes them: request-phase for even `i`, final for odd `i` (a
/// final record becomes durable with the next request record's fdatasync).
pub fn phase_event(i: u64) -> AuditEvent {
    let mut e = call_event(i);
    if i.is_multiple_of(2) {
        e.outcome = Outcome::Forwarding;
        e.ended = None;
    }
    e
}

/// A fully populated tools/call event, final phase, answered OK.
pub fn call_event(i: u64) -> AuditEvent {
    let start = Timestamp::from_millisecond(1_795_506_591_000 + i as i64).unwrap();
    AuditEvent {
        call_uid: format!("call-{i:06}"),
        started: start,
        ended: Some(start + Duration::from_millis(42)),
        method: "tools/call".into(),
        jsonrpc_id: Some(i.to_string()),
        tool: Some(ToolInfo {
            capability: Capability::Tool,
            name: "refund".into(),
            mcp_tool: Some(objref(Kind::McpTool, "payments-api")),
            risk: Some(Risk::High),
        }),
        arguments: Some(json!({
            "order": format!("o-{i}"),
            "amount": 12.5,
            "card": {"number": SECRET_CARD, "exp": "12/30"},
            "customer": {"ssn": SECRET_SSN, "name": "Ada"},
            "password": SECRET_PASSWORD,
        })),
        principal: Some(PrincipalInfo {
            issuer: "http://127.0.0.1:40901".into(),
            subject: Some("agent-alpha".into()),
            client_id: Some("agent-alpha".into()),
            token_id: Some("jti-zhoIuwmk11J9".into()),
            scopes: vec!["mcp:tools.call".into(), "payments:refund".into()],
        }),
        client: Some(ClientInfo {
            object: objref(Kind::McpClient, "agent-alpha"),
            owner: "team-payments@example.com".into(),
        }),
        decision: Some(DecisionInfo {
            allowed: true,
            reason: "allowed".into(),
            decided_by: Some(objref(Kind::McpPolicy, "refunds")),
            mode: DecisionMode::Enforce,
            detail: None,
        }),
        outcome: Outcome::Answered,
        response: ResponseInfo {
            http_status: Some(200),
            upstream_status: Some(200),
            is_error: Some(false),
            jsonrpc_error: None,
            result: Some(
                json!({"content": [{"type": "text", "text": "refunded"}], "card": {"number": SECRET_CARD}}),
            ),
            progress_events: 2,
            task_id: None,
        },
        transport: TransportInfo {
            src: Some("127.0.0.1:53124".parse().unwrap()),
            session_id: Some("mcp-session-7f3c2a".into()),
            protocol_version: Some("2025-06-18".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            http_method: Some("POST".into()),
            path: Some("/mcp".into()),
            user_agent: Some("mcp-client/1.0".into()),
            client_software: Some("claude-code/1.2".into()),
            bytes_in: 311,
            bytes_out: 1834,
        },
        server: ServerInfo {
            name: "payments-api".into(),
            resource: Some("https://payments.example.com/mcp".into()),
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
        },
        count: None,
        server_request: None,
        upstream_auth: None,
    }
}

/// Every shape of event the proxy produces.
pub fn event_matrix() -> Vec<(&'static str, AuditEvent)> {
    let mut out = Vec::new();
    let base = call_event(1);
    out.push(("answered ok", base.clone()));
    let mut e = base.clone();
    e.outcome = Outcome::Forwarding;
    e.ended = None;
    e.response = ResponseInfo::default();
    out.push(("request phase", e));
    let mut e = base.clone();
    e.response.is_error = Some(true);
    out.push(("isError", e));
    let mut e = base.clone();
    e.response.jsonrpc_error = Some(JsonRpcError {
        code: -32602,
        message: "invalid params".into(),
    });
    e.response.is_error = None;
    out.push(("json-rpc error", e));
    let mut e = base.clone();
    e.outcome = Outcome::Denied;
    e.decision = Some(DecisionInfo {
        allowed: false,
        reason: "insufficient_scope".into(),
        decided_by: Some(objref(Kind::McpPolicy, "refunds")),
        mode: DecisionMode::Enforce,
        detail: Some("needs scopes payments:refund".into()),
    });
    e.response = ResponseInfo {
        http_status: Some(403),
        ..ResponseInfo::default()
    };
    out.push(("denied 403", e));
    let mut e = base.clone();
    e.outcome = Outcome::Denied;
    e.decision = Some(DecisionInfo {
        allowed: false,
        reason: "not_granted".into(),
        decided_by: Some(objref(Kind::McpTool, "payments-api")),
        ..DecisionInfo::default()
    });
    e.response = ResponseInfo {
        http_status: Some(200),
        jsonrpc_error: Some(JsonRpcError {
            code: -32602,
            message: "Unknown tool: refund".into(),
        }),
        ..ResponseInfo::default()
    };
    out.push(("denied as unknown tool", e));
    let mut e = base.clone();
    e.decision = Some(DecisionInfo {
        allowed: true,
        reason: "would_deny".into(),
        decided_by: Some(objref(Kind::McpPolicy, "audit-refunds")),
        mode: DecisionMode::Audit,
        detail: Some("enforcing would answer not_granted".into()),
    });
    out.push(("audit-mode would deny", e));
    // Unauthenticated: nothing but the transport is known.
    out.push((
        "unauthenticated 401",
        AuditEvent {
            call_uid: "call-anon".into(),
            started: base.started,
            ended: base.ended,
            outcome: Outcome::Denied,
            response: ResponseInfo {
                http_status: Some(401),
                ..ResponseInfo::default()
            },
            transport: TransportInfo {
                src: Some("[::1]:40000".parse().unwrap()),
                http_method: Some("POST".into()),
                ..TransportInfo::default()
            },
            ..AuditEvent::default()
        },
    ));
    for (name, outcome) in [
        ("cancelled", Outcome::Cancelled),
        ("disconnected", Outcome::Disconnected),
        ("timed out", Outcome::TimedOut),
        ("upstream failed", Outcome::UpstreamFailed),
    ] {
        let mut e = base.clone();
        e.outcome = outcome;
        e.response = ResponseInfo {
            http_status: Some(if outcome == Outcome::UpstreamFailed {
                502
            } else {
                200
            }),
            ..ResponseInfo::default()
        };
        out.push((name, e));
    }
    let mut e = base.clone();
    e.method = "tools/list".into();
    e.tool = None;
    e.arguments = None;
    e.outcome = Outcome::Denied;
    e.response = ResponseInfo {
        http_status: Some(403),
        ..ResponseInfo::default()
    };
    e.transport.session_id = None;
    e.transport.src = None;
    e.transport.traceparent = None;
    out.push(("denied tools/list without session or address", e));
    out.extend(capability_events(&base));
    let mut e = base;
    e.arguments = Some(json!({"blob": "z".repeat(200_000), "password": SECRET_PASSWORD}));
    e.response.result = Some(json!({"content": [{"type": "text", "text": "y".repeat(100_000)}]}));
    out.push(("oversized", e));
    out
}

/// The records of resources, prompts, completions and server requests (issue 19).
pub fn capability_events(base: &AuditEvent) -> Vec<(&'static str, AuditEvent)> {
    let mut out = Vec::new();
    let used = |capability, name: &str| ToolInfo {
        capability,
        name: name.into(),
        mcp_tool: Some(objref(Kind::McpTool, "payments-api")),
        risk: Some(Risk::Medium),
    };
    let mut e = base.clone();
    e.method = "resources/read".into();
    e.tool = Some(used(Capability::Resource, "file:///ledger/2026.csv"));
    e.arguments = None;
    e.response.is_error = None;
    e.response.result =
        Some(json!({"contents": [{"uri": "file:///ledger/2026.csv", "text": "a,b"}]}));
    out.push(("resources/read answered", e.clone()));
    e.outcome = Outcome::Forwarding;
    e.ended = None;
    e.response = ResponseInfo::default();
    out.push(("resources/read request phase", e));
    let mut e = base.clone();
    e.method = "prompts/get".into();
    e.tool = Some(used(Capability::Prompt, "summarize"));
    e.arguments = Some(json!({"ssn": SECRET_SSN, "topic": "refunds"}));
    e.response.is_error = None;
    out.push(("prompts/get answered", e));
    let mut e = base.clone();
    e.method = "completion/complete".into();
    e.tool = Some(used(Capability::Prompt, "summarize"));
    e.arguments = Some(json!({"topic": "ref"}));
    e.response.is_error = None;
    out.push(("completion/complete answered", e));
    let mut e = base.clone();
    e.method = "resources/subscribe".into();
    e.tool = Some(used(Capability::Resource, "file:///ledger/*"));
    e.arguments = None;
    e.outcome = Outcome::Denied;
    e.decision = Some(DecisionInfo {
        allowed: false,
        reason: "not_granted".into(),
        decided_by: Some(objref(Kind::McpTool, "payments-api")),
        ..DecisionInfo::default()
    });
    e.response = ResponseInfo {
        http_status: Some(200),
        jsonrpc_error: Some(JsonRpcError {
            code: -32002,
            message: "Resource not found".into(),
        }),
        ..ResponseInfo::default()
    };
    out.push(("resources/subscribe denied", e));
    let server = |outcome: Outcome, allowed: bool, tied_to: Option<&str>| {
        let mut e = base.clone();
        e.method = "elicitation/create".into();
        e.jsonrpc_id = Some("0".into());
        e.tool = None;
        e.arguments = None;
        e.outcome = outcome;
        e.decision = Some(DecisionInfo {
            allowed,
            reason: if allowed {
                "server_request_allowed"
            } else {
                "server_request_refused"
            }
            .into(),
            decided_by: Some(objref(Kind::McpTool, "payments-api")),
            ..DecisionInfo::default()
        });
        e.response = ResponseInfo::default();
        e.server_request = Some(ServerRequestInfo {
            kind: "Elicitation".into(),
            tied_to: tied_to.map(str::to_owned),
        });
        e
    };
    out.push((
        "server request relayed",
        server(Outcome::Relayed, true, Some("7")),
    ));
    out.push((
        "server request refused",
        server(Outcome::Denied, false, None),
    ));
    out
}

// ---------------------------------------------------------------- config

/// An audit configuration with a fixed key, no checkpoints unless asked, fast retries. `sinks` is
/// YAML after `sinks:` (` []`, or `\n  - name: …`).
pub fn config_yaml(spool: &Path, extra_spool: &str, sinks: &str) -> String {
    let key = spool.parent().unwrap().join("hmac.key");
    std::fs::write(&key, "test-key-0123456789abcdef\n").unwrap();
    let checkpoints = if extra_spool.contains("checkpointInterval") {
        ""
    } else {
        "  checkpointInterval: null\n"
    };
    format!(
        "spool:\n  dir: {}\n{checkpoints}{extra_spool}\nredaction:\n  keyFile: {}\n  alwaysRedact: [password]\nretry:\n  initial: 20ms\n  max: 500ms\nsinks:{sinks}\n",
        spool.display(),
        key.display()
    )
}

pub fn config(spool: &Path, extra_spool: &str, sinks: &str) -> AuditConfig {
    AuditConfig::from_yaml(&config_yaml(spool, extra_spool, sinks)).unwrap()
}

// ---------------------------------------------------------------- records

/// Parses a JSONL file (missing file: no lines). A last line without its newline is a write
/// still in progress (a reader may see part of a `write(2)` on a regular file): it is left out,
/// the next read sees it whole.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text[..text.rfind('\n').map_or(0, |i| i + 1)]
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", path.display()))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `metadata.sequence` of each record.
pub fn sequences(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["metadata"]["sequence"].as_u64().unwrap())
        .collect()
}

/// Distinct by `metadata.uid`, checking that a uid always comes with the same sequence.
pub fn dedup_by_uid(records: &[Value]) -> Vec<Value> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for r in records {
        let uid = r["metadata"]["uid"].as_str().unwrap().to_owned();
        let seq = r["metadata"]["sequence"].as_u64().unwrap();
        match seen.get(&uid) {
            Some(s) => assert_eq!(*s, seq, "uid {uid} came with two sequences"),
            None => {
                seen.insert(uid, seq);
                out.push(r.clone());
            }
        }
    }
    out
}

// ---------------------------------------------------------------- rsyslog

/// A real rsyslog receiving RFC 5424 over TCP on a random loopback port (config:
/// `tests/peers/rsyslog/rsyslog-audit.conf.tmpl`), killed when dropped.
pub struct Rsyslog {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    child: Option<Child>,
    pub starts: usize,
}

impl Rsyslog {
    pub fn start(dir: &Path) -> Self {
        // Debian's rsyslog, the SIEM stand-in, from `make peers`.
        let bin = peer("PEERS_RSYSLOGD");
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let port = free_port();
        let tmpl = std::fs::read_to_string(
            repo_root().join("tests/peers/rsyslog/rsyslog-audit.conf.tmpl"),
        )
        .unwrap();
        let conf = tmpl
            .replace("@DIR@", dir.to_str().unwrap())
            .replace("@PORT@", &port.to_string());
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let check = Command::new(&bin)
            .args(["-N1", "-f"])
            .arg(dir.join("rsyslog.conf"))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "rsyslogd -N1 rejected the config: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut r = Self {
            dir: dir.to_path_buf(),
            port,
            bin,
            child: None,
            starts: 0,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("rsyslogd.pid")); // a kill -9 leaves it behind
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.out"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {addr}: {}",
                std::fs::read_to_string(self.dir.join("rsyslogd.out")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Stops it gracefully (SIGTERM through `kill`, bounded), so omfile flushes.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn records(&self) -> Vec<Value> {
        read_jsonl(&self.dir.join("audit.jsonl"))
    }

    pub fn rejected(&self) -> usize {
        std::fs::read_to_string(self.dir.join("rejected.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The latest impstats counters by name (`audit_in(<port>)`, `audit_out`, …).
    pub fn stats(&self) -> HashMap<String, Value> {
        let mut out = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(self.dir.join("stats.jsonl")) {
            for l in text.lines() {
                if let Some(i) = l.find('{')
                    && let Ok(v) = serde_json::from_str::<Value>(&l[i..])
                    && let Some(name) = v.get("name").and_then(Value::as_str)
                {
                    out.insert(name.to_owned(), v.clone());
                }
            }
        }
        out
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------- HTTP capture server

/// Request headers and body of each accepted POST.
pub type Bodies = Arc<Mutex<Vec<(HashMap<String, String>, Vec<u8>)>>>;

/// A loopback HTTP server recording every POST body; answers 503 while `down`.
#[derive(Clone, Default)]
pub struct Capture {
    pub bodies: Bodies,
    pub down: Arc<AtomicBool>,
    /// Fail this many requests first (503), then succeed.
    pub fail_first: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl Capture {
    /// Starts serving on a random port; returns the base URL.
    pub async fn serve(&self) -> String {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let me = me.clone();
                            async move {
                                me.requests.fetch_add(1, Ordering::SeqCst);
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or_default().to_owned())
                                    })
                                    .collect();
                                let body =
                                    req.into_body().collect().await.unwrap().to_bytes().to_vec();
                                let failing = me.down.load(Ordering::SeqCst)
                                    || me
                                        .fail_first
                                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                            n.checked_sub(1)
                                        })
                                        .is_ok();
                                let status = if failing {
                                    503
                                } else {
                                    me.bodies.lock().unwrap().push((headers, body));
                                    200
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                            b"{}",
                                        )))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    /// Every record received, byte for byte as sent, newline-terminated (JSON-array bodies).
    pub fn raw_lines(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| {
                serde_json::from_slice::<Vec<Box<serde_json::value::RawValue>>>(b).unwrap()
            })
            .map(|r| format!("{}\n", r.get()))
            .collect()
    }

    /// Every record received (JSON-array bodies).
    pub fn records(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| serde_json::from_slice::<Vec<Value>>(b).unwrap())
            .collect()
    }
}

/// The call and refusal records (no checkpoints) a `--audit-dir` layout shipped to
/// `<dir>/audit.jsonl`.
pub fn call_records(dir: &Path) -> Vec<Value> {
    read_jsonl(&dir.join("audit.jsonl"))
        .into_iter()
        .filter(|r| r.pointer("/unmapped/mcp_warden/outcome").is_some())
        .collect()
}

/// A record's `unmapped.mcp_warden.outcome`.
pub fn outcome(r: &Value) -> &str {
    r["unmapped"]["mcp_warden"]["outcome"].as_str().unwrap()
}
