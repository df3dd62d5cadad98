//! Every MCP capability governed, black box (issue 19): the real `mcp-warden-sidecar` with the
//! demo's policies (`examples/everything`), real tokens from oidc-provider, and two real
//! upstreams, server-everything (TypeScript SDK) and `tests/peers/fixture_server.py` (Python SDK,
//! its lists paged two entries a page), each behind a recording tap.
//!
//! ```text
//! agent-alpha / agent-beta (ureq) ──► sidecar ──► tap (records every request) ──► upstream
//!                                        └── examples/everything (+ the Python fixture's
//!                                            resources, prompts and tools)
//! ```
//!
//! What each case proves is in `docs/denials.md` ("Resources, prompts and completions", "Lists",
//! "Resource updates", "Server requests"): lists filtered per caller (SSE and JSON answers,
//! pagination cursors kept), reads, prompts and completions decided, refusals never reaching the
//! upstream, resource updates only for readable URIs, server requests relayed only where
//! `McpTool.spec.serverRequests` allows and only on the answer stream of a pending request of
//! the caller (a refused one answered to the upstream with −32601, so the server's tool ends).
//! Each per-upstream test runs every case and lists them all (PASS/FAIL) before failing.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use cases::*;
use mcp_warden_test_support::{Idp, Proc, oidc_provider, peer_file, poll, repo_root};
use mcp_warden_tests::{
    cases::Cases,
    ensure,
    procs::{SidecarAddrs, enforced_version, server_everything, sidecar},
    tap::{Recorded, Tap},
};
use serde_json::{Value, json};
use server::*;
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};
use transport::*;

/// The resource (token audience) of examples/everything.
const RESOURCE: &str = "http://127.0.0.1:9401/mcp";
const LEGACY: &str = "2025-06-18";
const MODERN: &str = "2026-07-28";
const ALPHA: &str = "agent-alpha";
const BETA: &str = "agent-beta";
const FULL_SCOPE: &str = "mcp:tools.list mcp:tools.call";
const SERVER_REQUESTS: &str = "  serverRequests: [Elicitation, Sampling]\n";
/// The reloaded McpTool of the server-request cases: Sampling refused, Roots allowed (so a
/// roots/list on a GET stream is refused only for being tied to no request).
const SERVER_REQUESTS_NO_SAMPLING: &str = "  serverRequests: [Elicitation, Roots]\n";

mod cases;
mod server;
mod transport;

// ------------------------------------------------------------------------------------------
// The two upstreams, what examples/everything grants on each
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Everything,
    Python,
}

/// One upstream's names for the cases.
struct Names {
    /// Readable by agent-beta: a static resource and an instance of a granted template.
    readable: [&'static str; 2],
    /// Not readable by agent-beta (alpha may read it).
    unreadable: &'static str,
    /// Granted to agent-alpha, but its entry needs mcp:tools.call (a step-up for a token
    /// without it).
    scoped: &'static str,
    /// A prompt agent-beta may get, one it may not.
    prompt: &'static str,
    hidden_prompt: &'static str,
    /// A completion agent-beta may ask for: (prompt, argument).
    completion: (&'static str, &'static str),
    /// Templates: agent-beta's, and one it may not complete (None when the upstream has one).
    template: &'static str,
    template_argument: &'static str,
    hidden_template: Option<&'static str>,
    /// The sampling tool and its arguments.
    sampling: (&'static str, fn() -> Value),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Everything => "server-everything",
            Kind::Python => "python-fixture",
        }
    }

    fn names(self) -> Names {
        match self {
            Kind::Everything => Names {
                readable: [
                    "demo://resource/static/document/instructions.md",
                    "demo://resource/dynamic/text/7",
                ],
                unreadable: "demo://resource/static/document/architecture.md",
                scoped: "demo://resource/dynamic/blob/1",
                prompt: "simple-prompt",
                hidden_prompt: "args-prompt",
                completion: ("completable-prompt", "department"),
                template: "demo://resource/dynamic/text/{resourceId}",
                template_argument: "resourceId",
                hidden_template: Some("demo://resource/dynamic/blob/{resourceId}"),
                sampling: (
                    "trigger-sampling-request",
                    || json!({"prompt": "hello", "maxTokens": 10}),
                ),
            },
            Kind::Python => Names {
                readable: ["test://static-text", "test://template/7/data"],
                unreadable: "test://watched-resource",
                scoped: "test://static-binary",
                prompt: "test_simple_prompt",
                hidden_prompt: "test_prompt_with_embedded_resource",
                completion: ("test_prompt_with_arguments", "arg1"),
                template: "test://template/{id}/data",
                template_argument: "id",
                hidden_template: None,
                sampling: ("test_sampling", || json!({"prompt": "hello"})),
            },
        }
    }

    /// Whether a listed entry (uri, uriTemplate or prompt name) is shown to agent-beta.
    fn beta_sees(self, list: List, name: &str) -> bool {
        let shown: &[&str] = match (self, list) {
            (Kind::Everything, List::Resources) => &[
                "demo://resource/static/document/instructions.md",
                "demo://resource/static/document/features.md",
            ],
            (Kind::Everything, List::Templates) => &["demo://resource/dynamic/text/{resourceId}"],
            (Kind::Everything, List::Prompts) => &["simple-prompt", "completable-prompt"],
            (Kind::Python, List::Resources) => &["test://static-text"],
            (Kind::Python, List::Templates) => &["test://template/{id}/data"],
            (Kind::Python, List::Prompts) => &["test_simple_prompt", "test_prompt_with_arguments"],
        };
        shown.contains(&name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Resources,
    Templates,
    Prompts,
}

impl List {
    const ALL: [List; 3] = [List::Resources, List::Templates, List::Prompts];

    fn method(self) -> &'static str {
        match self {
            List::Resources => "resources/list",
            List::Templates => "resources/templates/list",
            List::Prompts => "prompts/list",
        }
    }

    /// The result member and each element's key.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            List::Resources => ("resources", "uri"),
            List::Templates => ("resourceTemplates", "uriTemplate"),
            List::Prompts => ("prompts", "name"),
        }
    }
}

fn python_fixture() -> (Proc, String) {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| {
        panic!("the Python fixture needs the peers' venv with `mcp` ({e}): run `make peers`")
    });
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/peers/fixture_server.py"))
        .arg("0")
        // Two entries a page: the filter must keep every page's nextCursor.
        .env("FIXTURE_PAGE_SIZE", "2");
    Proc::spawn("fixture_server.py", cmd, Duration::from_secs(60), |line| {
        line.strip_prefix("READY ").map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `from` must be in `text` once; it becomes `to`.
fn edit(text: &mut String, from: &str, to: &str) {
    assert!(
        text.matches(from).count() == 1,
        "examples/everything/everything.yaml changed: {from:?} is not there exactly once"
    );
    *text = text.replacen(from, to, 1);
}

/// examples/everything for the live IdP; for the Python fixture, its tools, resources and
/// prompts declared and granted like server-everything's.
fn config_text(kind: Kind, issuer: &str) -> String {
    let mut text = std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:9400", issuer);
    // basic-tools allows agent-beta 5 calls a minute (the demo's 429); reads, gets and
    // completions count too, and these cases make more: they test decisions, not quotas.
    edit(
        &mut text,
        "  rateLimit:\n    requests: 5\n    period: 1m\n",
        "  rateLimit:\n    requests: 100\n    period: 1m\n",
    );
    if kind == Kind::Everything {
        return text;
    }
    edit(
        &mut text,
        "    - name: get-sum\n      risk: Low\n",
        "    - name: get-sum\n      risk: Low\n    - name: greet\n      risk: Low\n    \
         - name: test_resource_updated\n      risk: Low\n    - name: test_sampling\n      \
         scopes: [mcp:tools.call]\n      risk: Medium\n    - name: test_detached_request\n      \
         scopes: [mcp:tools.call]\n      risk: Medium\n",
    );
    edit(
        &mut text,
        "\n  resources:\n",
        "\n  resources:\n    - uri: test://static-text\n      risk: Low\n    \
         - uri: test://static-binary\n      scopes: [mcp:tools.call]\n      risk: Medium\n    \
         - uri: test://watched-resource\n      risk: Low\n    \
         - uri: test://template/{id}/data\n      risk: Low\n",
    );
    edit(
        &mut text,
        "\n  prompts:\n",
        "\n  prompts:\n    - name: test_*\n      risk: Low\n",
    );
    edit(
        &mut text,
        "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*]",
        "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*, greet, test_*]",
    );
    edit(
        &mut text,
        r#"resources: ["demo://*"]"#,
        r#"resources: ["demo://*", "test://*"]"#,
    );
    edit(
        &mut text,
        "names: [echo, get-sum, get-tiny-image]",
        "names: [echo, get-sum, get-tiny-image, greet, test_resource_updated]",
    );
    edit(
        &mut text,
        "        - demo://resource/dynamic/text/{resourceId}\n",
        "        - demo://resource/dynamic/text/{resourceId}\n        - test://static-text\n        \
         - test://template/{id}/data\n",
    );
    edit(
        &mut text,
        "prompts: [simple-prompt, completable-prompt]",
        "prompts: [simple-prompt, completable-prompt, test_simple_prompt, test_prompt_with_arguments]",
    );
    text
}

struct Stack {
    kind: Kind,
    _sidecar: Proc,
    addrs: SidecarAddrs,
    tap: Tap,
    _upstream: Proc,
    upstream: String,
    idp: Idp,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// upstream ◄── tap ◄── sidecar (examples/everything) ◄── clients; IdP beside.
fn stack(kind: Kind) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let ((upstream_proc, upstream), idp) = thread::scope(|scope| {
        let idp = scope.spawn(|| oidc_provider(RESOURCE, 0));
        let upstream = match kind {
            Kind::Everything => server_everything()
                .unwrap_or_else(|e| panic!("server-everything is needed ({e}): run `make peers`")),
            Kind::Python => python_fixture(),
        };
        let idp = idp
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("oidc-provider is needed ({e}): run `make peers`"));
        (upstream, idp)
    });
    let tap = Tap::start(&upstream).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("everything.yaml");
    std::fs::write(&config, config_text(kind, &idp.issuer)).unwrap();
    let (sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &tap.url(),
    ])
    .unwrap_or_else(|e| {
        panic!("{e}\n(build the binaries first: `cargo build -p mcp-warden-sidecar --bins`)")
    });
    Stack {
        kind,
        _sidecar: sidecar,
        addrs,
        tap,
        _upstream: upstream_proc,
        upstream,
        idp,
        config,
        _dir: dir,
    }
}

impl Stack {
    fn url(&self) -> String {
        format!("{}/mcp", self.addrs.base)
    }

    /// The scopes op.mjs gives each agent: beta only mcp:tools.list.
    fn token(&self, client: &str, scope: &str) -> String {
        self.idp
            .token(client, scope)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn connect(&self, client: &str, capabilities: Value) -> Result<Client, String> {
        let scope = if client == BETA {
            "mcp:tools.list"
        } else {
            FULL_SCOPE
        };
        Client::connect(&self.url(), Some(self.token(client, scope)), capabilities)
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

    /// Rewrites the McpTool's serverRequests and waits until the sidecar enforces it.
    fn server_requests(&self, from: &str, to: &str) -> Result<(), String> {
        let before = enforced_version(&self.addrs.admin).ok_or("no config version reported")?;
        let text = std::fs::read_to_string(&self.config).unwrap();
        ensure!(text.contains(from), "the config has no {from:?}");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
        poll(Duration::from_secs(15), || {
            enforced_version(&self.addrs.admin).is_some_and(|v| v != before)
        })
        .ok_or_else(|| format!("the sidecar did not install {to:?} within 15 s"))?;
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// The report: every case runs, all results are listed, then the test fails if any failed
// ------------------------------------------------------------------------------------------

fn capabilities(kind: Kind) {
    let s = stack(kind);
    let mut report = Cases::new(kind.name());
    report.case("lists filtered per caller (SSE), cursors kept", || {
        lists(&s, false)
    });
    if kind == Kind::Python {
        report.case(
            "lists filtered per caller (2026-07-28 JSON, cacheScope private)",
            || lists(&s, true),
        );
        report.case(
            "subscriptions/listen: an unreadable resourceSubscriptions URI is not found",
            || listen(&s),
        );
    }
    report.case(
        "resources/read and subscribe: granted read, others not found and not forwarded, step-up",
        || resources(&s),
    );
    report.case(
        "prompts/get and completion/complete follow the grants",
        || prompts_and_completions(&s),
    );
    report.case("smuggled ref/uri keys → 400, not forwarded", || {
        smuggling(&s)
    });
    report.case(
        "notifications/resources/updated only for readable URIs",
        || updates(&s),
    );
    report.case("sampling relayed when serverRequests allows it", || {
        sampling_relayed(&s)
    });
    match s.server_requests(SERVER_REQUESTS, SERVER_REQUESTS_NO_SAMPLING) {
        Ok(()) => {
            report.case(
                "sampling refused without Sampling: upstream answered -32601, the call ends",
                || sampling_refused(&s),
            );
            report.case(
                "a server request on a GET stream is refused (allowed kind, no pending request)",
                || detached_refused(&s),
            );
        }
        Err(e) => report.case("reload serverRequests", || Err(e)),
    }
    report.finish();
}

#[test]
fn capabilities_server_everything() {
    capabilities(Kind::Everything);
}

#[test]
fn capabilities_python_fixture() {
    capabilities(Kind::Python);
}
