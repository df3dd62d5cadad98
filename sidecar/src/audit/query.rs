//! `mcp-warden audit query`: "every tool call made by this agent in this period, with the
//! identity and the response", from record files (spool, file sink, SIEM export).
//!
//! Records are deduplicated by `metadata.uid`; a call's request-phase and final records are joined
//! by `unmapped.mcp_warden.call_uid` and the final one is reported. A call with only a request
//! record (the sidecar died before the answer) is reported with outcome `no outcome recorded`.
//! Checkpoints are skipped.

use super::record::{EVENT_CHECKPOINT, EVENT_REQUEST};
use super::verify::{collect_files, for_each_line, order_files};
use jiff::{Timestamp, civil, tz::TimeZone};
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    io,
    path::PathBuf,
};

/// What to look for. Every set field must match.
#[derive(Clone, Debug, Default)]
pub struct QueryFilter {
    /// McpClient (`name` or `namespace/name`), `client_id` or `sub`.
    pub client: Option<String>,
    /// `time` ≥ this.
    pub from: Option<Timestamp>,
    /// `time` < this.
    pub to: Option<Timestamp>,
    /// Tool name.
    pub tool: Option<String>,
    /// `Mcp-Session-Id` (or correlation uid).
    pub session: Option<String>,
}

/// Parses `--from`/`--to`: RFC 3339 (`2026-11-24T07:00:00Z`), a civil date-time taken as UTC
/// (`2026-11-24T07:00`), or a date (`2026-11-24`, midnight UTC). `end` turns a bare date into
/// the end of that day (the next midnight), so `--from D --to D` is the whole day D.
pub fn parse_time(text: &str, end: bool) -> Result<Timestamp, String> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = text.parse::<civil::DateTime>()
        && text.contains('T')
    {
        return dt
            .to_zoned(TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| e.to_string());
    }
    match text.parse::<civil::Date>() {
        Ok(d) => {
            let d = if end {
                d.tomorrow().map_err(|e| e.to_string())?
            } else {
                d
            };
            d.to_zoned(TimeZone::UTC)
                .map(|z| z.timestamp())
                .map_err(|e| e.to_string())
        }
        Err(_) => Err(format!(
            "{text:?} is not a time such as 2026-11-24, 2026-11-24T07:00 or 2026-11-24T07:00:00Z"
        )),
    }
}

fn s<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn client_matches(v: &Value, client: &str) -> bool {
    let ns_name = match (
        s(v, "/unmapped/mcp_warden/client/namespace"),
        s(v, "/unmapped/mcp_warden/client/name"),
    ) {
        (Some(ns), Some(n)) => Some((ns, n)),
        _ => None,
    };
    ns_name.is_some_and(|(ns, n)| client == n || client == format!("{ns}/{n}"))
        || [
            "/actor/user/name",
            "/actor/app_name",
            "/actor/app_uid",
            "/actor/user/uid",
        ]
        .iter()
        .any(|p| s(v, p) == Some(client))
}

/// Matching records (final records, or request records without one), ordered by time.
pub fn query(paths: &[PathBuf], filter: &QueryFilter) -> io::Result<Vec<Value>> {
    let files = order_files(collect_files(paths)?)?;
    let mut seen = HashSet::new();
    let mut finals: Vec<Value> = Vec::new();
    let mut requests: HashMap<String, Value> = HashMap::new();
    for f in &files {
        for_each_line(f, |_, line| {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                return;
            };
            let Some(uid) = s(&v, "/metadata/uid") else {
                return;
            };
            if !seen.insert(uid.to_owned()) {
                return;
            }
            let code = s(&v, "/metadata/event_code");
            if code == Some(EVENT_CHECKPOINT) {
                return;
            }
            let time = v.get("time").and_then(Value::as_i64).unwrap_or_default();
            if filter.from.is_some_and(|t| time < t.as_millisecond())
                || filter.to.is_some_and(|t| time >= t.as_millisecond())
            {
                return;
            }
            if filter
                .client
                .as_deref()
                .is_some_and(|c| !client_matches(&v, c))
                || filter
                    .tool
                    .as_deref()
                    .is_some_and(|t| s(&v, "/resources/0/name") != Some(t))
                || filter.session.as_deref().is_some_and(|id| {
                    s(&v, "/actor/session/uid") != Some(id)
                        && s(&v, "/metadata/correlation_uid") != Some(id)
                })
            {
                return;
            }
            let call = s(&v, "/unmapped/mcp_warden/call_uid")
                .unwrap_or(uid)
                .to_owned();
            if code == Some(EVENT_REQUEST) {
                requests.insert(call, v);
            } else {
                finals.push(v);
            }
        })?;
    }
    let answered: HashSet<&str> = finals
        .iter()
        .filter_map(|v| s(v, "/unmapped/mcp_warden/call_uid"))
        .collect();
    let mut orphans: Vec<Value> = requests
        .into_iter()
        .filter(|(call, _)| !answered.contains(call.as_str()))
        .map(|(_, mut v)| {
            v["unmapped"]["mcp_warden"]["outcome"] = Value::String("no outcome recorded".into());
            v
        })
        .collect();
    finals.append(&mut orphans);
    finals.sort_by_key(|v| {
        (
            v.get("time").and_then(Value::as_i64).unwrap_or_default(),
            v.pointer("/metadata/sequence")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
        )
    });
    Ok(finals)
}

/// One line per record for people.
pub fn table_row(v: &Value) -> String {
    let time = v
        .get("time")
        .and_then(Value::as_i64)
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| "-".into(), |t| format!("{t:.3}"));
    let who = s(v, "/actor/user/name").unwrap_or("-");
    let sub = s(v, "/actor/user/uid").unwrap_or("-");
    let tool = s(v, "/resources/0/name").unwrap_or("-");
    let decision = s(v, "/unmapped/mcp_warden/decision/reason")
        .or(s(v, "/disposition"))
        .unwrap_or("-");
    let outcome = s(v, "/unmapped/mcp_warden/outcome").unwrap_or("-");
    let status = format!(
        "{}({})",
        s(v, "/status").unwrap_or("-"),
        s(v, "/status_code").unwrap_or("-")
    );
    let session = s(v, "/metadata/correlation_uid").unwrap_or("-");
    let seq = v
        .pointer("/metadata/sequence")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let args = v
        .pointer("/api/request/data/arguments")
        .map_or_else(|| "-".into(), Value::to_string);
    format!(
        "{time}  client={who} sub={sub} tool={tool} decision={decision} outcome={outcome} status={status} session={session} seq={seq} args={args}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms() {
        assert_eq!(
            parse_time("2026-11-24", false).unwrap().to_string(),
            "2026-11-24T00:00:00Z"
        );
        assert_eq!(
            parse_time("2026-11-24", true).unwrap().to_string(),
            "2026-11-25T00:00:00Z"
        );
        assert_eq!(
            parse_time("2026-11-24T07:30", false).unwrap().to_string(),
            "2026-11-24T07:30:00Z"
        );
        assert_eq!(
            parse_time("2026-11-24T07:30:00+01:00", false)
                .unwrap()
                .to_string(),
            "2026-11-24T06:30:00Z"
        );
        assert!(parse_time("yesterday", false).is_err());
    }
}
