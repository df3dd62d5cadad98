//! Every record shape validates against the OCSF 1.8.0 API Activity schema (Rust `jsonschema`,
//! draft 2020-12, formats on), carries the six seed fields, redacts, caps, and never holds a
//! token.

#![allow(clippy::unwrap_used)]

mod audit_support;

use audit_support::*;
use jiff::Timestamp;
use mcp_warden_sidecar::audit::{
    HmacKey, Product, Recorder, Redaction,
    record::{self, CheckpointInfo, GENESIS},
};
use serde_json::{Value, json};

fn recorder() -> Recorder {
    Recorder::new(
        HmacKey::new(b"test-key-0123456789abcdef".to_vec()).unwrap(),
        Redaction::new(["password", "token", "authorization"], false).unwrap(),
        64 * 1024,
        Product::default(),
    )
}

fn tool_redaction() -> Redaction {
    Redaction::new(["/card/number", "ssn"], true).unwrap()
}

/// Seals a prepared head the way the spool does.
fn seal(head: &[u8], seq: u64) -> (Vec<u8>, Value) {
    let mut line = Vec::new();
    record::seal(
        head,
        "0190a4c2-7d1e-7cc0-8f00-000000000001",
        seq,
        "test-instance",
        &GENESIS,
        &mut line,
    );
    let v = serde_json::from_slice(&line).unwrap();
    (line, v)
}

#[test]
fn the_validator_has_teeth() {
    // The reference sample is valid; the same record with defects is not.
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("ocsf/ocsf-6003-tools-call.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema_errors(&sample), Vec::<String>::new());
    for (what, mutate) in [
        (
            "activity_id 5",
            Box::new(|v: &mut Value| v["activity_id"] = json!(5)) as Box<dyn Fn(&mut Value)>,
        ),
        (
            "time as a string",
            Box::new(|v: &mut Value| v["time"] = json!("2026-11-24T07:49:51Z")),
        ),
        (
            "unknown top-level field",
            Box::new(|v: &mut Value| v["chain"] = json!("x")),
        ),
        (
            "bad IP",
            Box::new(|v: &mut Value| v["src_endpoint"]["ip"] = json!("999.1.1.1")),
        ),
        (
            "no api.operation",
            Box::new(|v: &mut Value| {
                v["api"].as_object_mut().unwrap().remove("operation");
            }),
        ),
        (
            "unknown metadata field",
            Box::new(|v: &mut Value| v["metadata"]["prev_hash"] = json!("x")),
        ),
    ] {
        let mut bad = sample.clone();
        mutate(&mut bad);
        assert!(!schema_errors(&bad).is_empty(), "{what} was accepted");
    }
}

#[test]
fn every_event_shape_validates_and_carries_the_seed_fields() {
    let rec = recorder();
    for (i, (name, ev)) in event_matrix().into_iter().enumerate() {
        let prepared = rec.prepare(&ev, &tool_redaction());
        let (line, v) = seal(&prepared.head, i as u64 + 1);
        let errors = schema_errors(&v);
        assert!(errors.is_empty(), "{name}: {}\n{v:#}", errors.join("\n"));
        let missing = missing_seed_fields(&v);
        assert!(missing.is_empty(), "{name}: missing {missing:?}\n{v:#}");
        assert_good_record(&v);
        assert!(
            line.len() <= rec.max_record_bytes(),
            "{name}: {} bytes",
            line.len()
        );
        let (claimed, actual) = record::line_hashes(&line).unwrap();
        assert_eq!(claimed, actual, "{name}: hash");
        // The token's id may be recorded; a token never (there is no field that could carry it,
        // and bearer-looking argument keys are redacted).
        let text = String::from_utf8(line).unwrap();
        assert!(!text.contains(BEARER), "{name}: token leaked");
    }
}

#[test]
fn fields_map_as_documented() {
    let rec = recorder();
    let (_, v) = seal(&rec.prepare(&call_event(7), &tool_redaction()).head, 7);
    assert_eq!(v["class_uid"], 6003);
    assert_eq!(v["activity_id"], 99);
    assert_eq!(v["type_uid"], 600399);
    assert_eq!(v["time"], 1_795_506_591_007i64 + 42);
    assert_eq!(v["duration"], 42);
    assert_eq!(v["status_id"], 1);
    assert_eq!(v["status_code"], "0");
    assert_eq!(v["disposition"], "Allowed");
    assert_eq!(v["risk_level"], "High");
    assert_eq!(v["actor"]["user"]["uid"], "agent-alpha");
    assert_eq!(v["actor"]["user"]["name"], "payments/agent-alpha");
    assert_eq!(v["actor"]["app_uid"], "agent-alpha");
    assert_eq!(v["actor"]["idp"]["uid"], "http://127.0.0.1:40901");
    assert_eq!(v["actor"]["session"]["credential_uid"], "jti-zhoIuwmk11J9");
    assert_eq!(
        v["actor"]["authorizations"][0]["policy"]["uid"],
        "McpPolicy/payments/refunds"
    );
    assert_eq!(v["api"]["operation"], "tools/call");
    assert_eq!(v["api"]["version"], "2025-06-18");
    assert_eq!(v["api"]["request"]["uid"], "7");
    assert_eq!(v["api"]["request"]["data"]["name"], "refund");
    assert_eq!(v["api"]["request"]["data"]["arguments"]["order"], "o-7");
    assert_eq!(v["api"]["response"]["data"]["isError"], false);
    assert_eq!(v["resources"][0]["uid"], "payments/payments-api/refund");
    assert_eq!(v["policy"]["name"], "payments/refunds");
    assert_eq!(v["policy"]["is_applied"], true);
    assert_eq!(v["metadata"]["correlation_uid"], "mcp-session-7f3c2a");
    assert_eq!(v["message_context"]["uid"], "mcp-session-7f3c2a");
    assert_eq!(v["trace"]["uid"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(v["trace"]["span"]["uid"], "00f067aa0ba902b7");
    assert_eq!(v["http_response"]["code"], 200);
    assert_eq!(v["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(
        v["unmapped"]["mcp_warden"]["client"]["owner"],
        "team-payments@example.com"
    );
    assert_eq!(
        v["unmapped"]["mcp_warden"]["scopes"],
        json!(["mcp:tools.call", "payments:refund"])
    );
    assert_eq!(v["unmapped"]["mcp_warden"]["upstream_status"], 200);
    assert_eq!(v["unmapped"]["mcp_warden"]["call_uid"], "call-000007");
    assert_eq!(v["metadata"]["event_code"], "mcp_warden.outcome");
    assert_eq!(v["metadata"]["sequence"], 7);
    let tags = &v["metadata"]["tags"];
    assert_eq!(tags[0]["name"], "mcp_warden.instance");
    assert_eq!(tags[1]["name"], "mcp_warden.chain.prev");
    assert_eq!(tags[2]["name"], "mcp_warden.chain.hash");
    // Audit-mode would-deny: let through, observed.
    let m = event_matrix();
    let (_, wd) = m
        .iter()
        .find(|(n, _)| *n == "audit-mode would deny")
        .unwrap();
    let (_, v) = seal(&rec.prepare(wd, &tool_redaction()).head, 1);
    assert_eq!(
        (v["disposition_id"].as_u64(), v["action"].as_str()),
        (Some(15), Some("Observed"))
    );
    assert_eq!(v["policy"]["is_applied"], false);
    // Unauthenticated: identity "anonymous", Unauthorized.
    let (_, anon) = m.iter().find(|(n, _)| *n == "unauthenticated 401").unwrap();
    let (_, v) = seal(&rec.prepare(anon, &Redaction::none()).head, 1);
    assert_eq!(v["actor"]["user"]["uid"], "anonymous");
    assert_eq!(v["disposition"], "Unauthorized");
    assert_eq!(v["src_endpoint"]["ip"], "::1");
    assert_eq!(v["metadata"]["correlation_uid"], "call-anon");
}

#[test]
fn redaction_hides_configured_values_and_equal_values_hash_equal() {
    let rec = recorder();
    let a = rec.prepare(&call_event(1), &tool_redaction());
    let b = rec.prepare(&call_event(2), &tool_redaction());
    let (la, va) = seal(&a.head, 1);
    let (lb, vb) = seal(&b.head, 2);
    for line in [&la, &lb] {
        let text = std::str::from_utf8(line).unwrap();
        for secret in [SECRET_CARD, SECRET_PASSWORD, SECRET_SSN] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
    let args = |v: &Value, p: &str| {
        v["api"]["request"]["data"]["arguments"]
            .pointer(p)
            .unwrap()
            .clone()
    };
    for p in ["/card/number", "/customer/ssn", "/password"] {
        let h = args(&va, p);
        assert!(h.as_str().unwrap().starts_with("hmac-sha256:"), "{p}: {h}");
        assert_eq!(h, args(&vb, p), "{p}: equal values must hash equal");
    }
    assert_eq!(args(&va, "/card/exp"), "12/30");
    assert_ne!(args(&va, "/order"), args(&vb, "/order"));
    // Response capture uses the same rules.
    let result = &va["api"]["response"]["data"]["result"];
    assert_eq!(result["content"][0]["text"], "refunded");
    assert_eq!(result["card"]["number"], args(&va, "/card/number"));
    // Without capture, no result at all.
    let c = rec.prepare(
        &call_event(1),
        &Redaction::new(["/card/number"], false).unwrap(),
    );
    let (_, vc) = seal(&c.head, 3);
    assert!(vc["api"]["response"]["data"].get("result").is_none());
    assert!(
        va["unmapped"]["mcp_warden"]["redacted_values"]
            .as_u64()
            .unwrap()
            >= 4
    );
}

#[test]
fn oversized_payloads_are_replaced_by_a_marker() {
    let rec = recorder();
    let m = event_matrix();
    let (_, ev) = m.iter().find(|(n, _)| *n == "oversized").unwrap();
    let (line, v) = seal(&rec.prepare(ev, &tool_redaction()).head, 1);
    assert!(line.len() <= 64 * 1024, "{}", line.len());
    assert_eq!(v["metadata"]["is_truncated"], true);
    assert!(v["metadata"]["untruncated_size"].as_u64().unwrap() > 300_000);
    let result = &v["api"]["response"]["data"]["result"];
    assert_eq!(result["mcp_warden_truncated"], true);
    let args = &v["api"]["request"]["data"]["arguments"];
    assert_eq!(args["mcp_warden_truncated"], true);
    assert_eq!(args["keys"], json!(["blob", "password"]));
    assert!(!String::from_utf8(line).unwrap().contains(SECRET_PASSWORD));
}

#[test]
fn checkpoints_validate_too() {
    let product = Product::default();
    for info in [
        CheckpointInfo {
            reason: "interval",
            instance: "i-1".into(),
            records_since_last: 10,
            first_retained_sequence: 1,
            last_sequence: 10,
            ..CheckpointInfo::default()
        },
        CheckpointInfo {
            reason: "drop",
            instance: "i-1".into(),
            dropped_total: 5,
            dropped_ranges: vec![(1, 5)],
            sinks: [("siem".to_owned(), 0)].into(),
            ..CheckpointInfo::default()
        },
    ] {
        let p = record::checkpoint_head(&info, &product, Timestamp::now());
        let (_, v) = seal(&p.head, 11);
        assert_good_record(&v);
        assert_eq!(v["metadata"]["event_code"], "mcp_warden.checkpoint");
    }
}

#[test]
fn resources_prompts_and_server_requests_are_typed_and_redacted_as_tools_are() {
    let rec = recorder();
    let base = call_event(3);
    let events = capability_events(&base);
    let record = |name: &str| {
        let (_, e) = events.iter().find(|(n, _)| *n == name).unwrap();
        seal(&rec.prepare(e, &tool_redaction()).head, 3).1
    };
    let read = record("resources/read answered");
    assert_eq!(read["resources"][0]["type"], "mcp.resource", "{read:#}");
    assert_eq!(read["resources"][0]["name"], "file:///ledger/2026.csv");
    assert_eq!(
        read["resources"][0]["uid"],
        "payments/payments-api/resource:file:///ledger/2026.csv"
    );
    assert_eq!(read["activity_name"], "Read");
    assert_eq!(read["api"]["operation"], "resources/read");
    assert_eq!(
        read["api"]["request"]["data"]["name"],
        "file:///ledger/2026.csv"
    );
    // The entry captures responses: the contents are recorded.
    assert_eq!(
        read["api"]["response"]["data"]["result"]["contents"][0]["text"],
        "a,b"
    );
    assert!(read["api"]["response"]["data"].get("isError").is_none());
    assert!(
        read["message"]
            .as_str()
            .unwrap()
            .contains("read resource file:///ledger/2026.csv"),
        "{read:#}"
    );
    let prompt = record("prompts/get answered");
    assert_eq!(prompt["resources"][0]["type"], "mcp.prompt");
    assert_eq!(prompt["resources"][0]["name"], "summarize");
    let ssn = prompt["api"]["request"]["data"]["arguments"]["ssn"]
        .as_str()
        .unwrap();
    assert!(
        ssn.starts_with("hmac-sha256:"),
        "the prompt argument is redacted: {ssn}"
    );
    assert_eq!(
        prompt["api"]["request"]["data"]["arguments"]["topic"],
        "refunds"
    );
    let completion = record("completion/complete answered");
    assert_eq!(completion["resources"][0]["type"], "mcp.prompt");
    assert_eq!(completion["api"]["operation"], "completion/complete");
    let denied = record("resources/subscribe denied");
    assert_eq!(denied["resources"][0]["type"], "mcp.resource");
    assert_eq!(denied["disposition"], "Blocked");
    let relayed = record("server request relayed");
    assert_eq!(relayed["resources"][0]["type"], "mcp.server_request");
    assert_eq!(relayed["resources"][0]["name"], "Elicitation");
    assert_eq!(relayed["api"]["operation"], "elicitation/create");
    assert_eq!(relayed["status"], "Success");
    assert_eq!(relayed["unmapped"]["mcp_warden"]["outcome"], "relayed");
    assert_eq!(
        relayed["unmapped"]["mcp_warden"]["server_request"],
        json!({"kind": "Elicitation", "tied_to": "7"})
    );
    let refused = record("server request refused");
    assert_eq!(refused["disposition"], "Blocked");
    assert_eq!(
        refused["unmapped"]["mcp_warden"]["decision"]["reason"],
        "server_request_refused"
    );
    // Tools keep their records as before.
    let tool = seal(&rec.prepare(&base, &tool_redaction()).head, 3).1;
    assert_eq!(tool["resources"][0]["type"], "mcp.tool");
    assert_eq!(tool["resources"][0]["uid"], "payments/payments-api/refund");
}
