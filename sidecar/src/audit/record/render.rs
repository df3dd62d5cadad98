//! An event → the open JSON head of its record: every field of the OCSF shapes filled from the
//! `AuditEvent`, serialized once, `metadata` left open for `seal`.

use super::fields::*;
use super::ocsf::*;
use super::recorder::record_time;
use super::{CATEGORY_UID, CLASS_UID};
use super::{EVENT_OUTCOME, EVENT_REQUEST, OCSF_VERSION, PROFILES, Product, RecordKind};
use crate::audit::event::{AuditEvent, DecisionMode, Outcome};
use jiff::Timestamp;
use mcp_warden_crds::Risk;
use serde::Serialize;
use serde_json::Value;
use std::{borrow::Cow, fmt};

pub(super) fn render(
    ev: &AuditEvent,
    kind: RecordKind,
    product: &Product,
    arguments: &Value,
    result: Option<&Value>,
    redacted: usize,
    truncated: Option<usize>,
) -> Vec<u8> {
    let time = record_time(ev);
    let time_ms = time.as_millisecond();
    let start_ms = ev.started.as_millisecond();
    let end_ms = ev.ended.map(|t| t.as_millisecond());
    let duration = end_ms.map(|e| (e - start_ms).max(0));
    let method = if ev.method.is_empty() {
        "unknown"
    } else {
        ev.method.as_str()
    };
    let (activity_id, activity_name, type_name) = activity(&ev.method);
    let trace = ev
        .transport
        .traceparent
        .as_deref()
        .and_then(parse_traceparent);
    let correlation = ev
        .transport
        .session_id
        .as_deref()
        .map(clip)
        .or(trace.map(|t| t.0))
        .unwrap_or(&ev.call_uid);
    let tool_name = ev.tool.as_ref().map_or("unknown", |t| clip(&t.name));
    // What `resources[0]` names: the tool, resource or prompt, or the kind of a server request.
    let used_name = match &ev.server_request {
        Some(r) => clip(&r.kind),
        None => tool_name,
    };
    let server = if ev.server.name.is_empty() {
        "unknown"
    } else {
        clip(&ev.server.name)
    };
    let principal = ev.principal.as_ref();
    let client_name = ev.client.as_ref().map(|c| c.object.ns_name());
    let subject = principal.and_then(|p| clip_opt(&p.subject));
    let client_id = principal.and_then(|p| clip_opt(&p.client_id));
    let user_uid = subject.or(client_id).unwrap_or("anonymous");
    let user_name: &dyn fmt::Display = match (&client_name, &client_id) {
        (Some(c), _) => c,
        (None, Some(id)) => id,
        (None, None) => &user_uid,
    };
    let anonymous = principal.is_none();
    let decision = ev.decision.as_ref();
    let allowed = decision.is_none_or(|d| d.allowed) && ev.outcome != Outcome::Denied;
    let would_deny =
        decision.is_some_and(|d| d.mode == DecisionMode::Audit && d.reason == "would_deny");
    let risk = ev.tool.as_ref().and_then(|t| t.risk);
    let resp = &ev.response;

    // Status.
    let (status_id, status, status_code, status_detail): (
        u32,
        &str,
        Cow<'_, str>,
        Option<Cow<'_, str>>,
    ) = match ev.outcome {
        Outcome::Forwarding => (0, "Unknown", "pending".into(), None),
        Outcome::Answered => match (&resp.jsonrpc_error, resp.is_error) {
            (Some(e), _) => (
                2,
                "Failure",
                e.code.to_string().into(),
                Some(clip(&e.message).into()),
            ),
            (None, Some(true)) => (
                2,
                "Failure",
                "0".into(),
                Some("the tool result has isError: true".into()),
            ),
            (None, _) => (1, "Success", "0".into(), None),
        },
        Outcome::Denied => (
            2,
            "Failure",
            resp.jsonrpc_error
                .as_ref()
                .map(|e| e.code.to_string().into())
                .or(resp.http_status.map(|s| s.to_string().into()))
                .unwrap_or("denied".into()),
            Some(decision.map_or("unauthenticated".into(), |d| d.reason.as_str().into())),
        ),
        Outcome::Relayed => (1, "Success", "0".into(), None),
        other => (2, "Failure", other.as_str().into(), None),
    };
    let (disposition_id, disposition, action_id, action) = if !allowed {
        if anonymous && resp.http_status == Some(401) {
            (26, "Unauthorized", 2, "Denied")
        } else {
            (2, "Blocked", 2, "Denied")
        }
    } else if would_deny {
        (15, "Detected", 3, "Observed")
    } else {
        (1, "Allowed", 1, "Allowed")
    };
    let severity_id = if !allowed {
        if matches!(risk, Some(Risk::High | Risk::Critical)) {
            3
        } else {
            2
        }
    } else if would_deny {
        2
    } else {
        1
    };
    let decision_word = if !allowed {
        "deny"
    } else if would_deny {
        "would_deny"
    } else {
        "allow"
    };
    let decided_by = decision.and_then(|d| d.decided_by.as_ref().map(|o| (d, o, o.ns_name())));
    let policy = decided_by.as_ref().map(|(d, o, name)| Policy {
        name: Shown(name),
        uid: Shown(*o),
        type_: o.kind.as_str(),
        is_applied: d.mode == DecisionMode::Enforce,
        desc: Some(&d.reason),
    });
    let authorizations = (decision.is_some() || !allowed).then_some([Authorization {
        decision: decision_word,
        policy,
    }]);

    let (resource_type, uid_kind, verb) = used_kind(ev);
    let message = Message {
        who: user_name,
        verb,
        what: if ev.tool.is_some() || ev.method == "tools/call" {
            tool_name
        } else {
            method
        },
        server,
        reason: decision.map_or(
            if allowed {
                "allowed"
            } else {
                "unauthenticated"
            },
            |d| d.reason.as_str(),
        ),
        phase: match ev.outcome {
            Outcome::Forwarding => "forwarding",
            Outcome::Relayed => "relayed",
            Outcome::Answered if status_id == 1 => "ok",
            Outcome::Answered => "error",
            other => other.as_str(),
        },
    };

    // The request-phase record is compact: it proves who called which tool with what, and the
    // decision, before the call is forwarded. Transport details (HTTP request, upstream endpoint,
    // message context) and the top-level policy (the same as `actor.authorizations[0].policy`)
    // are in the call's final record only.
    let full = kind != RecordKind::Request;
    let request_data = CallData {
        arguments: (!arguments.is_null()).then_some(arguments),
        name: used_name,
    };
    let response = (kind == RecordKind::Outcome).then(|| {
        let data = ResultData {
            is_error: resp.is_error,
            result,
        };
        ApiResponse {
            code: resp
                .jsonrpc_error
                .as_ref()
                .map(|e| e.code)
                .or(if ev.outcome == Outcome::Denied {
                    resp.http_status.map(i64::from)
                } else {
                    None
                })
                .unwrap_or(0),
            message: Some(match ev.outcome {
                Outcome::Answered if status_id == 1 => "ok",
                other => other.as_str(),
            }),
            error: resp.jsonrpc_error.as_ref().map(|e| e.code.to_string()),
            error_message: resp.jsonrpc_error.as_ref().map(|e| clip(&e.message)),
            data,
        }
    });

    let mcp_tool = ev.tool.as_ref().and_then(|t| t.mcp_tool.as_ref());
    let unmapped = Unmapped {
        mcp_warden: CallExt {
            bytes_in: ev.transport.bytes_in,
            bytes_out: ev.transport.bytes_out,
            call_uid: &ev.call_uid,
            client: ev.client.as_ref().map(|c| ClientExt {
                name: &c.object.name,
                namespace: &c.object.namespace,
                owner: clip(&c.owner),
            }),
            client_software: ev.transport.client_software.as_deref().map(clip),
            decision: decision.map(|d| DecisionExt {
                allowed: d.allowed,
                decided_by: d.decided_by.as_ref().map(|o| Shown(o)),
                detail: d.detail.as_deref().map(clip),
                mode: match d.mode {
                    DecisionMode::Enforce => "enforce",
                    DecisionMode::Audit => "audit",
                },
                reason: &d.reason,
            }),
            mcp_tool: mcp_tool.map(|o| Shown(o)),
            outcome: ev.outcome.as_str(),
            progress_events: (resp.progress_events > 0).then_some(resp.progress_events),
            redacted_values: redacted,
            scopes: Scopes(principal.map_or(&[], |p| &p.scopes)),
            server_request: ev.server_request.as_ref().map(|r| ServerRequestExt {
                kind: clip(&r.kind),
                tied_to: clip_opt(&r.tied_to),
            }),
            task_id: resp.task_id.as_deref().map(clip),
            traceparent: ev.transport.traceparent.as_deref().map(clip),
            upstream_auth: ev.upstream_auth.as_ref(),
            upstream_status: resp.upstream_status,
        },
    };

    let resource_uid = ToolUid {
        mcp_tool,
        server,
        kind: uid_kind,
        tool: used_name,
    };
    let time_dt = Rfc3339Ms(time);
    let software = ev.transport.client_software.as_deref().map(clip);
    let head = Head {
        class_uid: CLASS_UID,
        class_name: "API Activity",
        category_uid: CATEGORY_UID,
        category_name: "Application Activity",
        activity_id,
        activity_name,
        type_uid: CLASS_UID * 100 + activity_id,
        type_name,
        time: time_ms,
        time_dt: Shown(&time_dt),
        start_time: start_ms,
        end_time: end_ms,
        duration,
        count: ev.count,
        severity_id,
        severity: severity(severity_id),
        status_id,
        status,
        status_code,
        status_detail,
        disposition_id: Some(disposition_id),
        disposition: Some(disposition),
        action_id: Some(action_id),
        action: Some(action),
        risk_level_id: risk.map(|r| risk_level(r).0),
        risk_level: risk.map(|r| risk_level(r).1),
        message: Shown(&message),
        actor: Actor {
            user: User {
                uid: user_uid,
                name: Shown(user_name),
                type_id: if anonymous { 0 } else { 4 },
                type_: if anonymous { "Unknown" } else { "Service" },
            },
            app_name: client_name.as_ref().map(|c| Shown(c)),
            app_uid: client_id,
            idp: principal.map(|p| Idp {
                uid: clip(&p.issuer),
                issuer: clip(&p.issuer),
            }),
            session: (principal.is_some() || ev.transport.session_id.is_some()).then(|| Session {
                uid: ev.transport.session_id.as_deref().map(clip),
                issuer: principal.map(|p| clip(&p.issuer)),
                credential_uid: principal.and_then(|p| clip_opt(&p.token_id)),
            }),
            authorizations,
        },
        src_endpoint: Endpoint {
            ip: ev.transport.src.map(|a| a.ip().to_canonical()),
            port: ev.transport.src.map(|a| a.port()),
            name: ev.transport.src.is_none().then_some("unknown"),
            ..Endpoint::default()
        },
        dst_endpoint: full.then(|| Endpoint {
            ip: ev.server.upstream.map(|a| a.ip().to_canonical()),
            port: ev.server.upstream.map(|a| a.port()),
            svc_name: Some(server),
            hostname: None,
            name: None,
        }),
        http_request: full.then(|| HttpRequest {
            uid: &ev.call_uid,
            http_method: ev.transport.http_method.as_deref().map(clip),
            url: (ev.transport.path.is_some() || ev.server.resource.is_some()).then(|| Url {
                path: ev.transport.path.as_deref().map(clip),
                url_string: ev.server.resource.as_deref().map(clip),
            }),
            user_agent: ev.transport.user_agent.as_deref().map(clip),
            body_length: ev.transport.bytes_in,
        }),
        http_response: resp.http_status.map(|code| HttpResponse {
            code,
            body_length: ev.transport.bytes_out,
        }),
        api: Api {
            operation: clip(method),
            version: ev.transport.protocol_version.as_deref().map(clip),
            service: Service { name: server },
            request: ApiRequest {
                uid: ev.jsonrpc_id.as_deref().map_or("none", clip),
                data: request_data,
            },
            response,
        },
        resources: [Resource {
            name: used_name,
            type_: resource_type,
            uid: Shown(&resource_uid),
            criticality: risk.map(|r| risk_level(r).1),
        }],
        policy: policy.filter(|_| full),
        message_context: full.then_some(MessageContext {
            uid: correlation,
            name: "mcp",
            ai_role_id: 3,
            ai_role: "Tool",
            application: match (&software, &client_name) {
                (Some(s), _) => Some(Named { name: Shown(s) }),
                (None, Some(c)) => Some(Named { name: Shown(c) }),
                (None, None) => None,
            },
            service: Service { name: server },
        }),
        trace: trace.map(|(t, s)| Trace {
            uid: t,
            span: Span {
                uid: s,
                start_time: start_ms,
                end_time: end_ms.unwrap_or(start_ms),
                duration,
                operation: clip(method),
            },
        }),
        unmapped,
        metadata: Metadata {
            version: OCSF_VERSION,
            product,
            profiles: PROFILES,
            log_name: "mcp-warden-audit",
            event_code: match kind {
                RecordKind::Request => EVENT_REQUEST,
                _ => EVENT_OUTCOME,
            },
            logged_time: Timestamp::now().as_millisecond(),
            is_truncated: truncated.map(|_| true),
            untruncated_size: truncated,
            correlation_uid: correlation,
        },
    };
    open_head(&head)
}

/// Serializes a head and drops the two closing braces (of `metadata` and of the record).
pub(super) fn open_head(head: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    serde_json::to_writer(&mut out, head).expect("records serialize");
    debug_assert!(out.ends_with(b"}}"));
    out.truncate(out.len() - 2);
    out
}
