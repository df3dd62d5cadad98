//! The final records of forwarded calls (`tools/call`, `resources/read`, `prompts/get`, …):
//! `InFlight` (by caller and id, so that the
//! caller's `notifications/cancelled` finds them), `Calls` (one POST's calls, answered by the
//! relay's inspector) and `Audited` (the response body that writes them when it ends or drops).

use super::*;
use mcp_warden_policy::Capability;

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) event: AuditEvent,
    pub(super) redaction: Arc<Redaction>,
    pub(super) answered: bool,
    pub(super) cancelled: bool,
}

/// The forwarded calls awaiting their final records, by caller and JSON-RPC id, so that
/// a `notifications/cancelled` of the same caller finds them (another caller's cannot).
#[derive(Debug, Default)]
pub(in crate::proxy) struct InFlight(Mutex<HashMap<(PrincipalKey, Id), Weak<Calls>>>);

impl InFlight {
    pub(super) fn insert(&self, key: &PrincipalKey, ids: Vec<Id>, calls: &Arc<Calls>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            map.insert((key.clone(), id), Arc::downgrade(calls));
        }
    }

    fn remove(&self, key: &PrincipalKey, ids: impl Iterator<Item = Id>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            let entry = (key.clone(), id);
            // A newer call may reuse the id: remove only an entry whose call is gone or ending.
            if map.get(&entry).is_some_and(|w| {
                w.upgrade()
                    .is_none_or(|c| c.finished.load(Ordering::Acquire))
            }) {
                map.remove(&entry);
            }
        }
    }

    /// The caller cancelled its request `id`: its record ends `Cancelled` unless answered.
    pub(in crate::proxy) fn cancel(&self, key: &PrincipalKey, id: &Id) -> bool {
        let calls = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(key.clone(), id.clone()))
            .and_then(Weak::upgrade);
        calls.is_some_and(|c| c.cancelled(id))
    }
}

/// The forwarded calls of one POST, awaiting their final records.
#[derive(Debug)]
pub struct Calls {
    pub(super) auditor: Auditor,
    pub(super) pending: Mutex<HashMap<Id, Pending>>,
    pub(super) upstream_status: AtomicU16,
    pub(super) client_status: AtomicU16,
    pub(super) bytes_out: AtomicU64,
    pub(super) finished: AtomicBool,
    pub(super) in_flight: Option<(Arc<InFlight>, PrincipalKey)>,
}

impl Calls {
    /// The client cancelled `id`; `false` when it is not pending here.
    fn cancelled(&self, id: &Id) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.get_mut(id).map(|p| p.cancelled = true).is_some()
    }

    /// The upstream's status and the one the client gets.
    pub(in crate::proxy) fn set_status(&self, upstream: u16, client: u16) {
        self.upstream_status.store(upstream, Ordering::Relaxed);
        self.client_status.store(client, Ordering::Relaxed);
    }

    /// What the upstream was told about these calls (`upstream_auth::Applied`, no values).
    pub(in crate::proxy) fn set_upstream_auth(&self, applied: crate::upstream_auth::Applied) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for p in pending.values_mut() {
            p.event.upstream_auth = Some(applied.clone());
        }
    }

    /// The response to `id` went by (raw `result` / `error` JSON).
    pub(in crate::proxy) fn answered(&self, id: &Id, result: Option<&str>, error: Option<&str>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.get_mut(id) else {
            return;
        };
        p.answered = true;
        let response = &mut p.event.response;
        if let Some(error) = error.and_then(|e| serde_json::from_str::<Value>(e).ok()) {
            response.jsonrpc_error = Some(JsonRpcError {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        if let Some(result) = result.and_then(|r| serde_json::from_str::<Value>(r).ok()) {
            // Only a tool result has `isError`.
            let tool = p
                .event
                .tool
                .as_ref()
                .is_none_or(|t| t.capability == Capability::Tool);
            response.is_error = tool.then(|| {
                result
                    .get("isError")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            });
            if p.redaction.capture_response() {
                response.result = Some(result);
            }
        }
    }

    /// The upstream could not be reached (the proxy answered `denial`).
    pub(in crate::proxy) fn failed(&self, denial: &Denial) {
        let status = denial.status().as_u16();
        self.client_status.store(status, Ordering::Relaxed);
        let outcome = match denial {
            Denial::Upstream(UpstreamError::Timeout(_)) => Outcome::TimedOut,
            _ => Outcome::UpstreamFailed,
        };
        self.finish_with(|p| {
            p.event.outcome = outcome;
            p.event.response.jsonrpc_error = Some(JsonRpcError {
                code: denial.code(),
                message: denial.to_string(),
            });
        });
    }

    /// The response body ended (`complete`) or was dropped before its end.
    fn finish(&self, complete: bool) {
        let upstream = self.upstream_status.load(Ordering::Relaxed);
        let client = self.client_status.load(Ordering::Relaxed);
        self.finish_with(|p| {
            p.event.outcome = if (client == 502 || client == 504) && upstream != client {
                Outcome::UpstreamFailed
            } else if p.answered || (complete && !p.cancelled) {
                Outcome::Answered
            } else if p.cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Disconnected
            };
            if upstream != 0 {
                p.event.response.upstream_status = Some(upstream);
            }
        });
    }

    fn finish_with(&self, mut fill: impl FnMut(&mut Pending)) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let (ids, pending): (Vec<Id>, Vec<Pending>) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .unzip();
        if let Some((in_flight, key)) = &self.in_flight {
            in_flight.remove(key, ids.into_iter());
        }
        let client = self.client_status.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        for mut p in pending {
            fill(&mut p);
            p.event.ended = Some(Timestamp::now());
            if client != 0 {
                p.event.response.http_status = Some(client);
            }
            p.event.transport.bytes_out = bytes_out;
            if let Err(e) = self.auditor.record_final(&p.event, &p.redaction) {
                tracing::warn!(error = %e, "audit final record lost");
            }
        }
    }
}

/// A response body that writes the final records of its calls when it ends or is dropped.
pub(in crate::proxy) struct Audited {
    inner: ProxyBody,
    calls: Arc<Calls>,
    done: bool,
}

impl Audited {
    pub(in crate::proxy) fn wrap(inner: ProxyBody, calls: Arc<Calls>) -> ProxyBody {
        Self {
            inner,
            calls,
            done: false,
        }
        .boxed_unsync()
    }
}

impl Body for Audited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.calls
                        .bytes_out
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if this.inner.is_end_stream() {
                    this.done = true;
                    this.calls.finish(true);
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                this.calls.finish(true);
            }
            Poll::Ready(Some(Err(_))) => {
                this.done = true;
                this.calls.finish(false);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if !self.done {
            let complete = self.inner.is_end_stream();
            self.calls.finish(complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditConfig;
    use mcp_warden_policy::Principal;

    fn key(subject: &str) -> PrincipalKey {
        PrincipalKey::of(&Principal {
            issuer: "https://idp.example".into(),
            subject: Some(subject.into()),
            client_id: None,
            scopes: Default::default(),
            issued_at: None,
        })
    }

    fn calls(
        auditor: &Auditor,
        in_flight: &Arc<InFlight>,
        who: &PrincipalKey,
        id: Id,
    ) -> Arc<Calls> {
        let pending = Pending {
            event: AuditEvent::default(),
            redaction: Arc::new(Redaction::none()),
            answered: false,
            cancelled: false,
        };
        let calls = Arc::new(Calls {
            auditor: auditor.clone(),
            pending: Mutex::new(HashMap::from([(id.clone(), pending)])),
            upstream_status: AtomicU16::new(0),
            client_status: AtomicU16::new(0),
            bytes_out: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            in_flight: Some((in_flight.clone(), who.clone())),
        });
        in_flight.insert(who, vec![id], &calls);
        calls
    }

    #[tokio::test]
    async fn only_the_caller_of_a_call_can_cancel_it_and_ended_calls_leave_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = Auditor::start(
            &AuditConfig::in_dir(dir.path()),
            &prometheus::Registry::new(),
        )
        .unwrap();
        let in_flight = Arc::new(InFlight::default());
        let (alice, mallory) = (key("alice"), key("mallory"));
        let id = Id::from_value(&serde_json::json!(7)).unwrap();
        let call = calls(&auditor, &in_flight, &alice, id.clone());
        assert!(
            !in_flight.cancel(&mallory, &id),
            "another caller's cancellation"
        );
        assert!(!in_flight.cancel(&alice, &Id::from_value(&serde_json::json!(8)).unwrap()));
        assert!(in_flight.cancel(&alice, &id));
        call.finish(false);
        assert!(
            in_flight.0.lock().unwrap().is_empty(),
            "removed when finished"
        );
        assert!(!in_flight.cancel(&alice, &id), "nothing left to cancel");
    }
}
