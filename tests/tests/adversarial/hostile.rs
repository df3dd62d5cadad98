//! A hostile upstream: answers the sidecar must read, never pass unread.

use super::*;

pub(crate) const TOOLS_SHOWN: &str = r#"{"name":"echo","description":"Echoes back the input","inputSchema":{"type":"object"}},{"name":"get-sum","description":"Adds","inputSchema":{"type":"object"}},{"name":"get-tiny-image","description":"A PNG","inputSchema":{"type":"object"}}"#;
pub(crate) const GET_ENV: &str =
    r#"{"name":"get-env","description":"Dumps the environment","inputSchema":{"type":"object"}}"#;

pub(crate) fn all_tools() -> String {
    format!("[{TOOLS_SHOWN},{GET_ENV}]")
}

pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `data` as a real gzip member (deflate "stored" blocks): any client would inflate it.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let blocks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

pub(crate) fn answer(
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> http::Response<tap::Body> {
    let mut b = http::Response::builder()
        .status(200)
        .header("content-type", content_type);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(tap::full(body)).unwrap()
}

/// The tools/list answer for `mode` (the request's id is 1).
pub(crate) fn hostile_list(mode: char) -> http::Response<tap::Body> {
    let ok = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{}}}}}"#,
            all_tools()
        )
    };
    let json = "application/json";
    match mode {
        'a' => {
            let mut body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{TOOLS_SHOWN},{{"name":"get-env","description":"Dumps "#).into_bytes();
            body.extend_from_slice(b"\xff\xfe");
            body.extend_from_slice(br#" the environment","inputSchema":{"type":"object"}}]}}"#);
            answer(json, body, &[])
        }
        'b' => answer(
            json,
            [b"\xEF\xBB\xBF".as_slice(), ok("1").as_bytes()].concat(),
            &[],
        ),
        'c' => answer(
            json,
            gzip(ok("1").as_bytes()),
            &[("content-encoding", "gzip")],
        ),
        'd' => answer("text/plain", ok("1").into_bytes(), &[]),
        'e' => answer(json, ok("2").into_bytes(), &[]),
        'f' => answer(json, ok("1.0").into_bytes(), &[]),
        'g' => {
            let event = format!(
                "event: message\nid: ev-1\ndata: {{\"id\":1,\"method\":\"x\",\"result\":{{\"tools\":{}}}}}\n\n",
                all_tools()
            );
            answer("text/event-stream", event.into_bytes(), &[])
        }
        'h' => answer(
            json,
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{TOOLS_SHOWN}],"tools":{}}}}}"#,
                all_tools()
            )
            .into_bytes(),
            &[],
        ),
        _ => answer(json, ok("1").into_bytes(), &[]),
    }
}

pub(crate) async fn hostile(
    req: http::Request<hyper::body::Incoming>,
    mode: Arc<Mutex<char>>,
    served: Arc<AtomicUsize>,
    sessions: Arc<AtomicUsize>,
) -> http::Response<tap::Body> {
    if req.method() != http::Method::POST {
        return http::Response::builder()
            .status(405)
            .body(tap::full(""))
            .unwrap();
    }
    let bytes = http_body_util::Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let msg: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let id = msg.get("id").cloned();
    match (msg["method"].as_str(), id) {
        (_, None) => http::Response::builder()
            .status(202)
            .body(tap::full(""))
            .unwrap(),
        (Some("initialize"), Some(id)) => {
            let n = sessions.fetch_add(1, Ordering::Relaxed);
            let body = json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": msg.pointer("/params/protocolVersion").cloned().unwrap_or(json!(VERSION)),
                "capabilities": {"tools": {}}, "serverInfo": {"name": "hostile", "version": "0"}}});
            answer(
                "application/json",
                body.to_string().into_bytes(),
                &[("mcp-session-id", &format!("hostile-{n}"))],
            )
        }
        (Some("tools/list"), Some(_)) => {
            served.fetch_add(1, Ordering::Relaxed);
            let m = *mode.lock().unwrap();
            hostile_list(m)
        }
        (Some("tools/call"), Some(id)) => {
            // A result of `size` bytes: what a tool with a large output (or a hostile server)
            // answers.
            served.fetch_add(1, Ordering::Relaxed);
            let size = msg
                .pointer("/params/arguments/size")
                .and_then(Value::as_u64);
            let text = "x".repeat(usize::try_from(size.unwrap_or(1)).unwrap_or(1));
            let body = json!({"jsonrpc": "2.0", "id": id,
                              "result": {"content": [{"type": "text", "text": text}]}});
            answer("application/json", body.to_string().into_bytes(), &[])
        }
        (_, Some(id)) => {
            let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
            answer("application/json", body.to_string().into_bytes(), &[])
        }
    }
}

/// The sidecar (examples/everything, an IdP beside it) in front of `server`: the process, the
/// MCP URL, the IdP and the folder holding the configuration.
fn behind_sidecar(server: &tap::Server) -> (Proc, String, Idp, tempfile::TempDir) {
    let idp = oidc_provider(RESOURCE, 0)
        .unwrap_or_else(|e| panic!("oidc-provider is needed ({e}): run `make peers`"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("everything.yaml");
    std::fs::write(&config, config_text(Kind::Everything, &idp.issuer)).unwrap();
    let (sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &format!("http://{}/mcp", server.addr),
    ])
    .unwrap_or_else(|e| {
        panic!("{e}\n(build the binaries first: `cargo build -p mcp-warden-sidecar --bins`)")
    });
    (sidecar, format!("{}/mcp", addrs.base), idp, dir)
}

#[test]
pub(crate) fn hostile_upstream_answers_never_show_a_hidden_tool() {
    let mode = Arc::new(Mutex::new('0'));
    let served = Arc::new(AtomicUsize::new(0));
    let server = {
        let (mode, served, sessions) =
            (mode.clone(), served.clone(), Arc::new(AtomicUsize::new(0)));
        tap::serve(move |req| hostile(req, mode.clone(), served.clone(), sessions.clone()))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (_sidecar, url, idp, _dir) = behind_sidecar(&server);
    let token = idp
        .token(BETA, "mcp:tools.list")
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = Kind::Everything.beta_tools();
    // (mode, label, a filtered list is acceptable, no answer at all is acceptable)
    let modes = [
        (
            '0',
            "control: a well-formed full list → filtered",
            true,
            false,
        ),
        (
            'a',
            "(a) invalid UTF-8 in a tool description → withheld",
            false,
            false,
        ),
        (
            'b',
            "(b) a UTF-8 BOM before the JSON → withheld",
            false,
            false,
        ),
        ('c', "(c) Content-Encoding: gzip → withheld", false, false),
        ('d', "(d) Content-Type: text/plain → withheld", false, false),
        (
            'e',
            "(e) the full list under id 2 for request 1 → withheld",
            false,
            false,
        ),
        (
            'f',
            "(f) the full list under id 1.0 → filtered or withheld",
            true,
            false,
        ),
        (
            'g',
            "(g) SSE event {id:1, method:x, result:{tools}} → filtered, dropped or withheld",
            true,
            true,
        ),
        (
            'h',
            "(h) \"tools\" twice in the result → withheld",
            false,
            false,
        ),
    ];
    let mut report = Cases::new("hostile upstream");
    let direct = format!("http://{}/mcp", server.addr);
    report.case(
        "notifications/initialized: the upstream's 202 reaches the client",
        || notifications(&url, token.clone(), &direct),
    );
    for (m, label, filtered_ok, dropped_ok) in modes {
        report.case(label, || {
            *mode.lock().unwrap() = m;
            let beta = Client::connect(&url, Some(token.clone()), VERSION)?;
            let before = served.load(Ordering::Relaxed);
            let r = beta.post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)?;
            ensure!(
                served.load(Ordering::Relaxed) == before + 1,
                "the hostile upstream did not receive the tools/list"
            );
            ensure!(
                !r.text().contains("get-env"),
                "agent-beta SAW get-env: {}",
                r.summary()
            );
            ensure!(
                r.header("content-encoding").is_none_or(|e| e == "identity"),
                "a compressed answer reached the client unread: {:?}",
                r.headers
            );
            match r.reply(&json!(1)) {
                Some(reply) if reply.get("result").is_some() => {
                    let tools: BTreeSet<String> = reply
                        .pointer("/result/tools")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t["name"].as_str().map(str::to_owned))
                        .collect();
                    ensure!(
                        filtered_ok,
                        "expected the answer withheld (-32603), got a list: {}",
                        r.summary()
                    );
                    ensure!(tools == shown, "expected exactly {shown:?}, got {tools:?}");
                    eprintln!("[hostile upstream] {label}: filtered (id {})", reply["id"]);
                }
                Some(reply) => {
                    let code = reply.pointer("/error/code").and_then(Value::as_i64);
                    let message = reply
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    ensure!(
                        code == Some(-32603) && message.contains("withheld"),
                        "expected -32603 \"… withheld …\", got {}",
                        r.summary()
                    );
                    ensure!(
                        m != '0',
                        "the well-formed list was withheld: {}",
                        r.summary()
                    );
                    eprintln!(
                        "[hostile upstream] {label}: withheld (HTTP {}: {message})",
                        r.status
                    );
                }
                None => {
                    ensure!(dropped_ok, "no answer to request 1: {}", r.summary());
                    eprintln!("[hostile upstream] {label}: dropped ({})", r.summary());
                }
            }
            Ok(())
        });
    }
    report.finish();
}

/// Large answers cost bounded memory: 8 callers at once each get a 3 MiB result (12 MiB of the
/// default 32 MiB answer budget each: two at a time, the others wait their turn) and four
/// 40 MiB answers at once are withheld unread; the sidecar's RSS stays under the injector's
/// 128 Mi limit.
#[test]
pub(crate) fn large_upstream_answers_take_turns_within_the_sidecar_memory() {
    const MIB: u64 = 1 << 20;
    const CALLERS: u64 = 8;
    let (mode, served) = (Arc::new(Mutex::new('0')), Arc::new(AtomicUsize::new(0)));
    let server = {
        let (served, sessions) = (served.clone(), Arc::new(AtomicUsize::new(0)));
        tap::serve(move |req| hostile(req, mode.clone(), served.clone(), sessions.clone()))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (sidecar, url, idp, _dir) = behind_sidecar(&server);
    let token = idp
        .token(ALPHA, "mcp:tools.list mcp:tools.call")
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = sidecar.id();
    let before = rss_kib(pid).expect("the sidecar's VmRSS");
    let sampler = PeakRss::start(pid, before);
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (url, token) = (url.clone(), token.clone());
            thread::spawn(move || -> Result<Resp, String> {
                let alpha = Client::connect(&url, Some(token), VERSION)?;
                alpha.call(100 + i, "echo", &json!({"size": 3 * MIB}))
            })
        })
        .collect();
    let answers: Vec<Result<Resp, String>> =
        callers.into_iter().map(|h| h.join().unwrap()).collect();
    let huge: Vec<Result<Resp, String>> = (0..4)
        .map(|i| {
            let (url, token) = (url.clone(), token.clone());
            thread::spawn(move || -> Result<Resp, String> {
                let alpha = Client::connect(&url, Some(token), VERSION)?;
                alpha.call(200 + i, "echo", &json!({"size": 40 * MIB}))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let peak_mib = sampler.stop() / 1024;
    let mut report = Cases::new("large upstream answers");
    report.case(
        "8 × 3 MiB at once: each passed whole or withheld, never cut",
        || {
            let mut whole = 0;
            for (i, answer) in (0..CALLERS).zip(&answers) {
                let r = answer.as_ref().map_err(Clone::clone)?;
                let reply = r.reply(&json!(100 + i)).ok_or_else(|| r.summary())?;
                match reply
                    .pointer("/result/content/0/text")
                    .and_then(Value::as_str)
                {
                    Some(text) => {
                        ensure!(
                            text.len() as u64 == 3 * MIB,
                            "a cut result: {} bytes",
                            text.len()
                        );
                        whole += 1;
                    }
                    None => ensure!(
                        reply.pointer("/error/code") == Some(&json!(-32603)),
                        "neither the result nor a withheld error: {}",
                        r.summary()
                    ),
                }
            }
            ensure!(whole > 0, "no 7 MiB answer passed at all");
            Ok(())
        },
    );
    report.case(
        "4 × 40 MiB at once: withheld, unread (above one answer's 8 MiB share)",
        || {
            for (i, answer) in (0..4).zip(&huge) {
                let r = answer.as_ref().map_err(Clone::clone)?;
                let error = r
                    .reply(&json!(200 + i))
                    .and_then(|m| m.get("error").cloned())
                    .ok_or_else(|| format!("not withheld: {} bytes", r.text().len()))?;
                ensure!(error["code"] == json!(-32603), "{error}");
            }
            Ok(())
        },
    );
    report.case(
        &format!(
            "peak RSS {peak_mib} MiB (before: {} MiB) < 128 MiB",
            before / 1024
        ),
        || {
            ensure!(peak_mib < 128, "the sidecar reached {peak_mib} MiB");
            Ok(())
        },
    );
    report.finish();
}
