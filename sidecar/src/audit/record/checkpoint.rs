//! Checkpoint records: what the spool states about itself (last sequence, retained range, drops,
//! sink cursors), rendered as a class 6003 record in the sequence and the chain.

use super::fields::{Rfc3339Ms, Shown, clip, severity};
use super::ocsf::*;
use super::render::open_head;
use super::{
    CATEGORY_UID, CLASS_UID, EVENT_CHECKPOINT, OCSF_VERSION, PROFILES, Prepared, Product,
    RecordKind,
};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

/// What a checkpoint record states.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckpointInfo {
    /// Why it was written: `interval`, `startup`, `drop` or `shutdown`.
    pub reason: &'static str,
    /// The instance.
    pub instance: String,
    /// Records written since the previous checkpoint (this one excluded).
    pub records_since_last: u64,
    /// The oldest sequence still in the spool.
    pub first_retained_sequence: u64,
    /// The last sequence before this checkpoint.
    pub last_sequence: u64,
    /// Spool size in bytes.
    pub spool_bytes: u64,
    /// Records dropped (drop-oldest) since the spool was created.
    pub dropped_total: u64,
    /// Every sequence range dropped since the spool was opened (inclusive, merged, the last
    /// 1024 ranges), so the latest checkpoint that reaches a sink declares all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_ranges: Vec<(u64, u64)>,
    /// Bytes cut from the spool's tail on startup (a torn, never-acknowledged write).
    #[serde(skip_serializing_if = "is_zero")]
    pub recovered_truncated_bytes: u64,
    /// Acknowledged sequence per sink.
    pub sinks: std::collections::BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Renders a checkpoint record (written by the spool writer itself).
pub fn checkpoint_head(info: &CheckpointInfo, product: &Product, now: Timestamp) -> Prepared {
    let ms = now.as_millisecond();
    let dropped = info.dropped_total > 0;
    let message = if dropped {
        format!(
            "audit spool checkpoint ({}): {} records dropped by policy dropOldest so far",
            info.reason, info.dropped_total
        )
    } else {
        format!("audit spool checkpoint ({})", info.reason)
    };
    let head = Head {
        class_uid: CLASS_UID,
        class_name: "API Activity",
        category_uid: CATEGORY_UID,
        category_name: "Application Activity",
        activity_id: 99,
        activity_name: "Checkpoint",
        type_uid: CLASS_UID * 100 + 99,
        type_name: "API Activity: Checkpoint",
        time: ms,
        time_dt: Shown(&Rfc3339Ms(now)),
        start_time: ms,
        end_time: None,
        duration: None,
        count: None,
        severity_id: if info.reason == "drop" { 4 } else { 1 },
        severity: severity(if info.reason == "drop" { 4 } else { 1 }),
        status_id: 1,
        status: "Success",
        status_code: "0".into(),
        status_detail: None,
        disposition_id: None,
        disposition: None,
        action_id: None,
        action: None,
        risk_level_id: None,
        risk_level: None,
        message: Shown(&message),
        actor: Actor {
            user: User {
                uid: "mcp-warden",
                name: Shown(&"mcp-warden"),
                type_id: 3,
                type_: "System",
            },
            app_name: Some(Shown(&product.name)),
            app_uid: None,
            idp: None,
            session: None,
            authorizations: None,
        },
        src_endpoint: Endpoint {
            hostname: std::env::var("HOSTNAME").ok().map(|h| clip(&h).to_owned()),
            name: Some("mcp-warden"),
            ..Endpoint::default()
        },
        dst_endpoint: None,
        http_request: None,
        http_response: None,
        api: Api {
            operation: "mcp_warden/checkpoint",
            version: None,
            service: Service {
                name: "mcp-warden-audit",
            },
            request: ApiRequest {
                uid: "checkpoint",
                data: serde_json::to_value(info).expect("checkpoint info serializes"),
            },
            response: None,
        },
        resources: [Resource {
            name: "audit-spool",
            type_: "mcp_warden.spool",
            uid: Shown(&info.instance),
            criticality: None,
        }],
        policy: None,
        message_context: Some(MessageContext {
            uid: &info.instance,
            name: "mcp",
            ai_role_id: 0,
            ai_role: "Unknown",
            application: None,
            service: Service {
                name: "mcp-warden-audit",
            },
        }),
        trace: None,
        unmapped: json!({"mcp_warden": {"checkpoint": info}}),
        metadata: Metadata {
            version: OCSF_VERSION,
            product,
            profiles: PROFILES,
            log_name: "mcp-warden-audit",
            event_code: EVENT_CHECKPOINT,
            logged_time: ms,
            is_truncated: None,
            untruncated_size: None,
            correlation_uid: &info.instance,
        },
    };
    Prepared {
        head: open_head(&head),
        kind: RecordKind::Checkpoint,
        time_ms: ms,
    }
}
