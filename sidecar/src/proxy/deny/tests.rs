//! Unit tests of `deny`.
use super::*;
use http_body_util::BodyExt;
use mcp_warden_policy::{Kind, ObjectRef};

const RESOURCE: &str = "https://mcp.example.com/mcp";

fn client() -> ObjectRef {
    ObjectRef::new(Kind::McpClient, "demo", "agent-beta")
}

async fn parts(r: Response<ProxyBody>) -> (StatusCode, http::HeaderMap, Value) {
    let (parts, body) = r.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

fn id(n: u64) -> Option<Id> {
    Id::from_value(&n.into())
}

#[tokio::test]
async fn unauthenticated_is_401_with_a_challenge_and_the_request_id() {
    let (status, h, body) = parts(answer(
        &[(
            id(3),
            Denial::Unauthenticated(AuthError::Missing, "".into()),
        )],
        false,
        RESOURCE,
    ))
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        h["www-authenticate"],
        "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(body["id"], 3);
    assert_eq!(body["error"]["code"], -31001);
    let (_, h, _) = parts(answer(
        &[(
            None,
            Denial::Unauthenticated(AuthError::Invalid("expired".into()), "".into()),
        )],
        false,
        RESOURCE,
    ))
    .await;
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\", error_description=\"expired\"")
    );
}

#[tokio::test]
async fn hidden_tools_look_like_unknown_tools() {
    let decision = Decision::DenyNotGranted {
        client: client(),
        tool: ObjectRef::new(Kind::McpTool, "demo", "everything"),
    };
    let denial = Denial::from_decision(&decision, Capability::Tool, "get-env").unwrap();
    let (status, h, body) = parts(answer(&[(id(1), denial)], false, RESOURCE)).await;
    assert_eq!(status, 200);
    assert!(!h.contains_key("www-authenticate"));
    assert_eq!(
        body,
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: get-env"}})
    );
}

#[tokio::test]
async fn missing_scope_is_a_step_up_challenge_with_every_needed_scope() {
    let decision = Decision::DenyInsufficientScope {
        client: client(),
        policy: ObjectRef::new(Kind::McpPolicy, "demo", "basic-tools"),
        needed: vec!["mcp:admin".into(), "mcp:tools.call".into()],
    };
    let denial = Denial::from_decision(&decision, Capability::Tool, "get-env").unwrap();
    let (status, h, body) = parts(answer(&[(id(2), denial)], false, RESOURCE)).await;
    assert_eq!(status, 403);
    assert_eq!(
        h["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"mcp:admin mcp:tools.call\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(body["error"]["code"], -31003);
    assert_eq!(
        body["error"]["data"]["scopes"],
        json!(["mcp:admin", "mcp:tools.call"])
    );
    assert_eq!(body["error"]["data"]["tool"], "get-env");
}

#[tokio::test]
async fn lifecycle_denials_are_403_without_step_up_except_revoked_tokens() {
    let at = jiff::Timestamp::UNIX_EPOCH;
    let cases = [
        (
            Decision::DenySuspended {
                client: client(),
                reason: Some("runaway".into()),
            },
            403,
            -31004,
            "suspended",
        ),
        (
            Decision::DenyExpired {
                client: client(),
                at,
            },
            403,
            -31004,
            "expired",
        ),
        (
            Decision::DenyReviewOverdue {
                client: client(),
                due: at,
            },
            403,
            -31004,
            "review_overdue",
        ),
        (
            Decision::DenyUnknownClient {
                tool: ObjectRef::new(Kind::McpTool, "demo", "everything"),
                detail: "x".into(),
            },
            403,
            -31004,
            "unknown_client",
        ),
        (
            Decision::DenyTokenRevoked {
                client: client(),
                cutoff: at,
            },
            401,
            -31001,
            "token_revoked",
        ),
    ];
    for (decision, status, code, reason) in cases {
        let denial = Denial::from_decision(&decision, Capability::Tool, "").unwrap();
        let (s, h, body) = parts(answer(&[(id(9), denial)], false, RESOURCE)).await;
        assert_eq!(s, status, "{reason}");
        assert_eq!(body["error"]["code"], code, "{reason}");
        assert_eq!(body["error"]["data"]["reason"], reason);
        let challenge = h
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        if status == 401 {
            assert!(challenge.unwrap().contains("invalid_token"));
        } else {
            assert_eq!(
                challenge, None,
                "{reason}: no step-up for what scope cannot cure"
            );
        }
    }
    assert!(
        Denial::from_decision(
            &Decision::Allow {
                client: client(),
                policy: None,
                audit: false
            },
            Capability::Tool,
            "echo"
        )
        .is_none()
    );
}

#[tokio::test]
async fn a_denied_batch_answers_every_request_id() {
    let denials = [
        (id(1), Denial::BatchNotForwarded),
        (None, Denial::BatchNotForwarded),
        (
            id(2),
            Denial::InsufficientScope {
                capability: Capability::Tool,
                name: "a".into(),
                needed: vec!["s2".into(), "s1".into()],
                policy: "p".into(),
            },
        ),
        (id(3), Denial::Hidden(Capability::Tool, "b".into())),
        (
            id(4),
            Denial::InsufficientScope {
                capability: Capability::Tool,
                name: "c".into(),
                needed: vec!["s1".into(), "s3".into()],
                policy: "p".into(),
            },
        ),
    ];
    let (status, h, body) = parts(answer(&denials, true, RESOURCE)).await;
    assert_eq!(status, 403);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"s1 s2 s3\"")
    );
    let codes: Vec<(i64, i64)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["error"]["code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(codes, [(1, -31005), (2, -31003), (3, -32602), (4, -31003)]);
    let (status, _, body) = parts(answer(
        &[
            (id(7), Denial::BatchNotForwarded),
            (id(8), Denial::Hidden(Capability::Tool, "x".into())),
        ],
        true,
        RESOURCE,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn transport_level_answers() {
    let cases: Vec<(Denial, u16, i64)> = vec![
        (
            Denial::Origin(OriginError::Host("evil.com".into())),
            403,
            -31002,
        ),
        (Denial::SessionNotFound, 404, -32001),
        (Denial::HeaderMismatch(Mismatch("x".into())), 400, -32020),
        (Denial::Parse(ParseError::Json("eof".into())), 400, -32700),
        (
            Denial::Parse(ParseError::Invalid {
                reason: "x".into(),
                id: None,
            }),
            400,
            -32600,
        ),
        (Denial::TooLarge(10), 413, -32600),
        (Denial::UnsupportedMediaType, 415, -32600),
        (Denial::NotAcceptable, 406, -32600),
        (Denial::MethodNotAllowed, 405, -32600),
        (Denial::NotReady, 503, -32603),
        (Denial::UpstreamUnauthorized, 502, -32603),
        (
            Denial::Upstream(UpstreamError::Timeout(std::time::Duration::from_secs(1))),
            504,
            -32603,
        ),
    ];
    for (denial, status, code) in cases {
        let reason = denial.reason();
        let (s, h, body) = parts(answer(&[(None, denial)], false, RESOURCE)).await;
        assert_eq!(
            (s.as_u16(), body["error"]["code"].as_i64().unwrap()),
            (status, code),
            "{reason}"
        );
        assert_eq!(body["id"], Value::Null);
        assert!(!h.contains_key("www-authenticate"), "{reason}");
        if status == 503 {
            assert_eq!(h["retry-after"], "1");
        }
    }
    let (_, _, body) = parts(answer(&[(None, Denial::SessionNotFound)], false, RESOURCE)).await;
    assert_eq!(
        body,
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}})
    );
}

#[tokio::test]
async fn a_throttled_call_is_answered_by_the_quota_through_the_one_encoder() {
    use crate::quota::{LimitKind, Limited};
    let throttled = |as_tool_result| Denial::Throttled {
        outcome: Arc::new(QuotaOutcome::Limited(Limited {
            reason: LimitKind::PolicyRate,
            limit: Arc::new(ObjectRef::new(Kind::McpPolicy, "demo", "basic-tools")),
            retry_after: std::time::Duration::from_millis(1500),
            remaining: None,
            tool: "echo".into(),
            quota: 5,
            window: std::time::Duration::from_secs(60),
        })),
        as_tool_result,
    };
    // Alone: the quota's 429 with Retry-After and RateLimit headers.
    let (status, h, body) = parts(answer(&[(id(4), throttled(false))], false, RESOURCE)).await;
    assert_eq!(status, 429);
    assert_eq!(h["retry-after"], "2");
    assert!(h.contains_key("ratelimit") && h.contains_key("ratelimit-policy"));
    assert_eq!(body["id"], 4);
    assert_eq!(body["error"]["code"], -31029);
    assert_eq!(body["error"]["data"]["limit"]["name"], "basic-tools");
    // As a tool result the model reads (throttleResponse: ToolError).
    let (status, _, body) = parts(answer(&[(id(4), throttled(true))], false, RESOURCE)).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["isError"], true);
    // In a batch: refused whole, the others not forwarded, the quota's headers kept.
    let denials = [
        (id(1), Denial::BatchNotForwarded),
        (id(2), throttled(false)),
    ];
    let (status, h, body) = parts(answer(&denials, true, RESOURCE)).await;
    assert_eq!(status, 429);
    assert_eq!(h["retry-after"], "2");
    assert_eq!(body[0]["error"]["code"], -31005);
    assert_eq!(body[1]["error"]["code"], -31029);
    assert_eq!(body[1]["error"]["data"]["reason"], "policy_rate");
}
