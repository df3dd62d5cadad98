//! Lease-based leader election (`coordination.k8s.io/v1` Lease), in the client-go style.
//!
//! ```text
//! every retry period:
//!   no Lease            ──create {holder: me}──────────────────────► leader
//!   holder == me        ──replace renewTime (resourceVersion-guarded)► leader (a 409 or an error
//!                                                                     for lease_duration: follower)
//!   holder != me, its record unchanged for lease_duration (our monotonic clock), or no holder
//!                       ──replace {holder: me, transitions + 1}─────► leader
//!   otherwise           ───────────────────────────────────────────► follower
//! ```
//!
//! Expiry of someone else's lease is judged by when *we* last saw its record change, not by its
//! `renewTime`, so clock skew between nodes does not matter. Every write carries the
//! `resourceVersion` it read: of two replicas racing for an expired lease, one gets a 409.
//! Leadership is published on a `watch` channel; only the status writer reads it (every replica
//! serves the push API).

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use std::time::Duration;
use tokio::{sync::watch, time::Instant};

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Defaults as in client-go: 15 s lease, retry every 2 s.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What we last saw of someone else's lease, and when (monotonic).
#[derive(Debug)]
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

/// Runs the election until `shutdown` resolves, publishing leadership on `leader`; releases the
/// lease on shutdown when held, so a successor does not wait for it to expire.
pub async fn run(
    client: Client,
    settings: LeaseSettings,
    leader: watch::Sender<bool>,
    metrics: Option<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut observed: Option<Observed> = None;
    let mut last_renewal: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let result = try_acquire_or_renew(&api, &settings, &mut observed).await;
        let is_leader = match result {
            Ok(held) => {
                if held {
                    last_renewal = Some(Instant::now());
                }
                held
            }
            Err(error) => {
                tracing::warn!(%error, lease = %settings.name, "lease acquire/renew failed");
                if let Some(m) = &metrics {
                    m.error("lease");
                }
                // Keep leading through transient errors until the lease would have expired.
                last_renewal.is_some_and(|t| t.elapsed() < settings.lease_duration.mul_f32(0.8))
            }
        };
        if !is_leader {
            last_renewal = None;
        }
        if *leader.borrow() != is_leader {
            tracing::info!(identity = %settings.identity, leader = is_leader, "leadership changed");
        }
        leader.send_if_modified(|l| std::mem::replace(l, is_leader) != is_leader);
        if let Some(m) = &metrics {
            m.leader.set(i64::from(is_leader));
        }
        tokio::select! {
            () = tokio::time::sleep(settings.retry_period) => {}
            () = &mut shutdown => break,
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        if let Err(error) = release(&api, &settings).await {
            tracing::warn!(%error, "could not release the lease");
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn duration_seconds(settings: &LeaseSettings) -> i32 {
    i32::try_from(settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One round: returns whether we hold the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(settings.identity.clone()),
                lease_duration_seconds: Some(duration_seconds(settings)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(settings.identity.as_str());
    if !ours && holder.is_some() {
        // Someone else holds it: expired only when its record has not changed for a whole
        // lease duration, measured on our clock.
        let rv = lease.metadata.resource_version.clone();
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(settings.lease_duration, Duration::from_secs);
        match observed {
            Some(o) if o.resource_version == rv => {
                if o.at.elapsed() < duration {
                    return Ok(false);
                }
            }
            _ => {
                *observed = Some(Observed {
                    resource_version: rv,
                    at: Instant::now(),
                });
                return Ok(false);
            }
        }
        tracing::info!(previous = ?holder, "the lease expired; taking it over");
    }
    if !ours {
        spec.holder_identity = Some(settings.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(duration_seconds(settings));
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => {
            *observed = None;
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (holder cleared, 1 s duration) if we still hold it.
async fn release(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    api.replace(&settings.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}
