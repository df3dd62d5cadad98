//! `review approve`: records a review on an McpClient.
//!
//! ```text
//! <ns/name> --by <person> [--at <time>]
//!   ──GET McpClient (missing → NotFound; no spec.review → NoCadence)
//!   ──PATCH (JSON merge, field manager mcp-warden-review)
//!       {"spec": {"review": {"lastReviewedAt": <at>, "lastReviewedBy": <person>}}}
//!   ──► the operator's next status pass moves status.reviewDue to at + intervalDays
//! ```
//!
//! The patch touches only those two fields; `intervalDays` and `enforce` stay as they are. It is
//! sent with the credentials of the person running the command (their kubeconfig): recording a
//! review is their act, and the operator's ServiceAccount needs no write access to specs.

use super::ReviewError;
use jiff::{SignedDuration, Timestamp};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use mcp_warden_crds::McpClient;
use serde_json::{Value, json};

/// The field manager of review writes.
pub const FIELD_MANAGER: &str = "mcp-warden-review";
/// How far in the future `--at` may be (clock skew between machines).
const MAX_FUTURE: SignedDuration = SignedDuration::from_mins(5);

/// A review to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The McpClient's namespace.
    pub namespace: String,
    /// The McpClient's name.
    pub name: String,
    /// Who reviewed it (`spec.review.lastReviewedBy`).
    pub by: String,
    /// When (`spec.review.lastReviewedAt`), whole seconds.
    pub at: Timestamp,
}

impl Approval {
    /// Checks the values: a reviewer of 1 to 253 characters, a time not in the future.
    pub fn new(
        namespace: &str,
        name: &str,
        by: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Self, ReviewError> {
        let by = by.trim();
        if by.is_empty() || by.len() > 253 || by.chars().any(char::is_control) {
            return Err(ReviewError::Usage(
                "--by must name the reviewer (1 to 253 characters, e.g. alice@example.com)".into(),
            ));
        }
        if at > now + MAX_FUTURE {
            return Err(ReviewError::Usage(format!(
                "--at {at} is in the future; a review is recorded when it happened"
            )));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            by: by.to_owned(),
            at: Timestamp::from_second(at.as_second()).unwrap_or(at),
        })
    }

    /// The merge patch that records it.
    pub fn patch(&self) -> Value {
        json!({"spec": {"review": {
            "lastReviewedAt": self.at.to_string(),
            "lastReviewedBy": self.by,
        }}})
    }
}

/// Splits `namespace/name`, or takes `name` in `namespace` (the flag, else `default_ns`).
pub fn target(
    client: &str,
    namespace: Option<&str>,
    default_ns: &str,
) -> Result<(String, String), ReviewError> {
    match client.split_once('/') {
        Some((ns, name)) => {
            if namespace.is_some_and(|n| n != ns) {
                return Err(ReviewError::Usage(format!(
                    "{client} names namespace {ns}, but -n says {}",
                    namespace.unwrap_or_default()
                )));
            }
            if ns.is_empty() || name.is_empty() || name.contains('/') {
                return Err(ReviewError::Usage(format!(
                    "{client:?} is not <namespace>/<name>"
                )));
            }
            Ok((ns.to_owned(), name.to_owned()))
        }
        None if client.is_empty() => Err(ReviewError::Usage("name the McpClient".into())),
        None => Ok((
            namespace.unwrap_or(default_ns).to_owned(),
            client.to_owned(),
        )),
    }
}

/// Records `approval` (or, with `dry_run`, only checks that it can be): returns the McpClient as
/// stored afterwards (as it is, with `dry_run`).
pub async fn approve(
    client: &Client,
    approval: &Approval,
    dry_run: bool,
) -> Result<McpClient, ReviewError> {
    let api: Api<McpClient> = Api::namespaced(client.clone(), &approval.namespace);
    let not_found = || ReviewError::NotFound {
        namespace: approval.namespace.clone(),
        name: approval.name.clone(),
    };
    let current = api.get_opt(&approval.name).await?.ok_or_else(not_found)?;
    if current.spec.review.is_none() {
        return Err(ReviewError::NoCadence {
            namespace: approval.namespace.clone(),
            name: approval.name.clone(),
        });
    }
    if dry_run {
        return Ok(current);
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch(&approval.name, &params, &Patch::Merge(approval.patch()))
        .await
    {
        Ok(stored) => Ok(stored),
        // Deleted between the read and the write.
        Err(kube::Error::Api(e)) if e.is_not_found() => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_named_by_namespace_slash_name_or_with_n() {
        let ok = |c: &str, n: Option<&str>| target(c, n, "default").expect("valid");
        assert_eq!(ok("agents/bot", None), ("agents".into(), "bot".into()));
        assert_eq!(
            ok("agents/bot", Some("agents")),
            ("agents".into(), "bot".into())
        );
        assert_eq!(ok("bot", Some("agents")), ("agents".into(), "bot".into()));
        assert_eq!(ok("bot", None), ("default".into(), "bot".into()));
        for (c, n) in [
            ("agents/bot", Some("other")),
            ("/bot", None),
            ("a/b/c", None),
            ("", None),
        ] {
            assert!(
                matches!(target(c, n, "default"), Err(ReviewError::Usage(_))),
                "{c:?} -n {n:?}"
            );
        }
    }

    #[test]
    fn the_patch_sets_only_the_review_record() {
        let now: Timestamp = "2026-12-10T12:00:00Z".parse().expect("time");
        let at: Timestamp = "2026-12-10T11:00:00.750Z".parse().expect("time");
        let a = Approval::new("agents", "bot", " alice@example.com ", at, now).expect("valid");
        assert_eq!(
            a.patch(),
            json!({"spec": {"review": {"lastReviewedAt": "2026-12-10T11:00:00Z",
                                       "lastReviewedBy": "alice@example.com"}}})
        );
    }
}
