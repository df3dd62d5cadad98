//! `POST /v1/usage` as the push API server sees it: authenticate the sidecar, then parse,
//! check, bind to the caller and record one report.

use super::*;

/// Receives `POST /v1/usage` bodies for the push API server.
pub trait UsageSink: Send + Sync + 'static {
    /// Authenticates the caller from its headers, before the body is read.
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>>;

    /// Handles one report of an authenticated `caller`: its headers and the (size-limited)
    /// body. A 503 answer gets `Retry-After`.
    fn post(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)>;
}

/// `POST /v1/usage`: authenticates the caller (headers), checks that the report's pod is the
/// caller's (body), drops malformed entries, then records the report.
#[derive(Clone)]
pub struct UsageEndpoint {
    /// Where reports go.
    pub store: UsageStore,
    /// Who may report for which pod (the same check as the watch stream).
    pub authorizer: Arc<dyn Authorizer>,
    /// Receipt time.
    pub clock: Arc<dyn Clock>,
    /// Counts reports (`accepted`, `duplicate`, `invalid`, `refused`, `not_leader`).
    pub metrics: Option<crate::metrics::Metrics>,
    /// With leader election: whether this replica leads. A follower answers 503 so that the
    /// sidecar sends the report again (on a new connection, so through the Service to another
    /// replica) until the leader, the only one writing status, has it. `None`: every report is
    /// taken (files mode, a single replica).
    pub leading: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for UsageEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageEndpoint").finish_non_exhaustive()
    }
}

impl UsageEndpoint {
    fn count(&self, result: &str) {
        if let Some(m) = &self.metrics {
            m.usage_reports.with_label_values(&[result]).inc();
        }
    }
}

/// The JSON answer to a refused caller.
fn refused(e: &AuthError) -> (StatusCode, serde_json::Value) {
    (e.status(), json!({"error": e.to_string()}))
}

impl UsageSink for UsageEndpoint {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            let caller = self.authorizer.authenticate(headers).await;
            if let Err(reason) = &caller {
                self.count("refused");
                tracing::warn!(%reason, "usage report refused before its body was read");
            }
            caller
        })
    }

    fn post(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)> {
        self.handle(caller, headers, body, None)
    }
}

/// A [`UsageEndpoint`] that keeps only what the reporting pod's McpTool could observe: entries
/// for McpClients or McpTools outside the pod's current bundle (as [`Index`] computes it for
/// its sidecar) are dropped, so a pod cannot mark another team's client runaway or move its
/// last seen. For the cluster mode, where the index knows every Pod.
#[derive(Clone, Debug)]
pub struct ScopedUsage {
    /// The endpoint proper.
    pub endpoint: UsageEndpoint,
    /// Where pods' bundles come from.
    pub index: Index,
}

impl UsageSink for ScopedUsage {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        self.endpoint.authenticate(headers)
    }

    fn post(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)> {
        self.endpoint
            .handle(caller, headers, body, Some(self.index.clone()))
    }
}

impl UsageEndpoint {
    /// One report: parse, check the envelope, drop malformed entries (and, with `index`, those
    /// outside the pod's bundle), bind to the caller, record.
    fn handle(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
        index: Option<Index>,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)> {
        let this = self.clone();
        Box::pin(async move {
            let mut report: UsageReport = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    this.count("invalid");
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("not a usage report: {e}")}),
                    );
                }
            };
            let dropped = match validate(&mut report) {
                Ok(n) => n,
                Err(e) => {
                    this.count("invalid");
                    return (StatusCode::BAD_REQUEST, json!({"error": e}));
                }
            };
            if this.leading.as_ref().is_some_and(|l| !*l.borrow()) {
                this.count("not_leader");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "this replica does not lead: send the report again"}),
                );
            }
            if let Err(reason) = push::bind(
                this.authorizer.as_ref(),
                &caller,
                &headers,
                &report.namespace,
                &report.pod,
            )
            .await
            {
                this.count("refused");
                tracing::warn!(namespace = %report.namespace, pod = %report.pod, %reason, "usage report refused");
                return refused(&reason);
            }
            let out_of_scope = index.map_or(0, |index| {
                let bundle = index.bundle_of(&report.namespace, &report.pod);
                scope(&mut report, bundle.as_deref())
            });
            let dropped = dropped + out_of_scope;
            if dropped > 0 {
                tracing::warn!(namespace = %report.namespace, pod = %report.pod, dropped, out_of_scope, "usage report: malformed entries or entries outside the pod's bundle dropped");
            }
            let mut answer = match this.store.record(report, this.clock.now()) {
                Recorded::Accepted => {
                    this.count("accepted");
                    json!({"accepted": true})
                }
                Recorded::Duplicate => {
                    this.count("duplicate");
                    json!({"accepted": false, "duplicate": true})
                }
            };
            if dropped > 0 {
                answer["dropped"] = json!(dropped);
            }
            (StatusCode::OK, answer)
        })
    }
}
