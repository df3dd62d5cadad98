//! The OCSF 1.8.0 API Activity shapes we emit: only what we write, in output order, `metadata`
//! last (so that `seal` can close it). Built by `render.rs` for calls and `checkpoint.rs` for
//! checkpoints.

use super::Product;
use super::fields::{Scopes, Shown};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::net::IpAddr;

/// One record before its seal. `D` is the request's `api.request.data`, `U` the `unmapped`
/// object: typed for calls (no intermediate `Value` per record), `Value` for checkpoints.
#[derive(Serialize)]
pub(super) struct Head<'a, D = Value, U = Value> {
    pub(super) class_uid: u32,
    pub(super) class_name: &'static str,
    pub(super) category_uid: u32,
    pub(super) category_name: &'static str,
    pub(super) activity_id: u32,
    pub(super) activity_name: &'a str,
    pub(super) type_uid: u32,
    pub(super) type_name: &'static str,
    pub(super) time: i64,
    pub(super) time_dt: Shown<'a>,
    pub(super) start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) end_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) duration: Option<i64>,
    /// OCSF `count`: the requests an aggregated record stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) count: Option<u64>,
    pub(super) severity_id: u32,
    pub(super) severity: &'static str,
    pub(super) status_id: u32,
    pub(super) status: &'static str,
    pub(super) status_code: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) status_detail: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) disposition_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) disposition: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) action_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) risk_level_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) risk_level: Option<&'static str>,
    pub(super) message: Shown<'a>,
    pub(super) actor: Actor<'a>,
    pub(super) src_endpoint: Endpoint<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dst_endpoint: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) http_response: Option<HttpResponse>,
    pub(super) api: Api<'a, D>,
    pub(super) resources: [Resource<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) policy: Option<Policy<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) message_context: Option<MessageContext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) trace: Option<Trace<'a>>,
    pub(super) unmapped: U,
    pub(super) metadata: Metadata<'a>,
}

#[derive(Serialize)]
pub(super) struct Actor<'a> {
    pub(super) user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) app_name: Option<Shown<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) app_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) idp: Option<Idp<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) session: Option<Session<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) authorizations: Option<[Authorization<'a>; 1]>,
}

#[derive(Serialize)]
pub(super) struct User<'a> {
    pub(super) uid: &'a str,
    pub(super) name: Shown<'a>,
    pub(super) type_id: u32,
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
}

#[derive(Serialize)]
pub(super) struct Idp<'a> {
    pub(super) uid: &'a str,
    pub(super) issuer: &'a str,
}

#[derive(Serialize)]
pub(super) struct Session<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) credential_uid: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct Authorization<'a> {
    pub(super) decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) policy: Option<Policy<'a>>,
}

#[derive(Serialize, Clone, Copy)]
pub(super) struct Policy<'a> {
    pub(super) name: Shown<'a>,
    pub(super) uid: Shown<'a>,
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
    pub(super) is_applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) desc: Option<&'a str>,
}

#[derive(Serialize, Default)]
pub(super) struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) svc_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) hostname: Option<String>,
    /// Set when nothing else is known (the schema needs one identifying field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct HttpRequest<'a> {
    pub(super) uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) http_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<Url<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_agent: Option<&'a str>,
    pub(super) body_length: u64,
}

#[derive(Serialize)]
pub(super) struct Url<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) url_string: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct HttpResponse {
    pub(super) code: u16,
    pub(super) body_length: u64,
}

#[derive(Serialize)]
pub(super) struct Api<'a, D> {
    pub(super) operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) version: Option<&'a str>,
    pub(super) service: Service<'a>,
    pub(super) request: ApiRequest<'a, D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) response: Option<ApiResponse<'a>>,
}

#[derive(Serialize)]
pub(super) struct Service<'a> {
    pub(super) name: &'a str,
}

#[derive(Serialize)]
pub(super) struct ApiRequest<'a, D> {
    pub(super) uid: &'a str,
    pub(super) data: D,
}

/// `api.request.data` of a call (fields in key order, as a JSON object would sort them).
#[derive(Serialize)]
pub(super) struct CallData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) arguments: Option<&'a Value>,
    pub(super) name: &'a str,
}

/// `unmapped`: the product's own fields.
#[derive(Serialize)]
pub(super) struct Unmapped<T> {
    pub(super) mcp_warden: T,
}

/// `unmapped.mcp_warden` of a call (fields in key order).
#[derive(Serialize)]
pub(super) struct CallExt<'a> {
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) call_uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client: Option<ClientExt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client_software: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) decision: Option<DecisionExt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) mcp_tool: Option<Shown<'a>>,
    pub(super) outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) progress_events: Option<u32>,
    pub(super) redacted_values: usize,
    #[serde(skip_serializing_if = "Scopes::is_empty")]
    pub(super) scopes: Scopes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) server_request: Option<ServerRequestExt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) upstream_auth: Option<&'a crate::upstream_auth::Applied>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) upstream_status: Option<u16>,
}

/// `unmapped.mcp_warden.server_request`: the kind, and the client's request it came with.
#[derive(Serialize)]
pub(super) struct ServerRequestExt<'a> {
    pub(super) kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tied_to: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct ClientExt<'a> {
    pub(super) name: &'a str,
    pub(super) namespace: &'a str,
    pub(super) owner: &'a str,
}

#[derive(Serialize)]
pub(super) struct DecisionExt<'a> {
    pub(super) allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) decided_by: Option<Shown<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) detail: Option<&'a str>,
    pub(super) mode: &'static str,
    pub(super) reason: &'a str,
}

/// `api.response.data` of a call.
#[derive(Serialize)]
pub(super) struct ResultData<'a> {
    #[serde(rename = "isError", skip_serializing_if = "Option::is_none")]
    pub(super) is_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) result: Option<&'a Value>,
}

#[derive(Serialize)]
pub(super) struct ApiResponse<'a> {
    pub(super) code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error_message: Option<&'a str>,
    pub(super) data: ResultData<'a>,
}

#[derive(Serialize)]
pub(super) struct Resource<'a> {
    pub(super) name: &'a str,
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
    pub(super) uid: Shown<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) criticality: Option<&'static str>,
}

#[derive(Serialize)]
pub(super) struct MessageContext<'a> {
    pub(super) uid: &'a str,
    pub(super) name: &'static str,
    pub(super) ai_role_id: u32,
    pub(super) ai_role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) application: Option<Named<'a>>,
    pub(super) service: Service<'a>,
}

#[derive(Serialize)]
pub(super) struct Named<'a> {
    pub(super) name: Shown<'a>,
}

#[derive(Serialize)]
pub(super) struct Trace<'a> {
    pub(super) uid: &'a str,
    pub(super) span: Span<'a>,
}

#[derive(Serialize)]
pub(super) struct Span<'a> {
    pub(super) uid: &'a str,
    pub(super) start_time: i64,
    pub(super) end_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) duration: Option<i64>,
    pub(super) operation: &'a str,
}

#[derive(Serialize)]
pub(super) struct Metadata<'a> {
    pub(super) version: &'static str,
    pub(super) product: &'a Product,
    pub(super) profiles: [&'static str; 4],
    pub(super) log_name: &'static str,
    pub(super) event_code: &'static str,
    pub(super) logged_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) is_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) untruncated_size: Option<usize>,
    pub(super) correlation_uid: &'a str,
}
