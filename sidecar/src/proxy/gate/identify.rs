//! Who is calling: from the request's headers alone, once per request.
//!
//! ```text
//! headers ──► Authorization? ──► auth::Authenticator::authenticate ──► Principal   (else 401)
//!             none + settings.anonymous_client ──► auth::anonymous_principal
//! Principal ──► policy::authenticate (the McpClient, its lifecycle) ──► Access     (else 403/401)
//! ```
//!
//! The McpClient is looked up here and nowhere else: [`Access::caller`] hands out the policy view
//! of the admitted client by its index in the rules the request holds.

use super::super::{deny::Denial, session::PrincipalKey};
use crate::{
    auth::{self, AuthError, Authenticator},
    settings::Settings,
    state::Active,
};
use http::{HeaderMap, header};
use jiff::Timestamp;
use mcp_warden_policy::{Caller, ObjectRef, Principal};
use std::sync::Arc;

/// An authenticated caller whose McpClient was in good standing when the request started.
#[derive(Clone, Debug)]
pub struct Access {
    /// The rules in force when the request started.
    pub active: Arc<Active>,
    /// Who is calling.
    pub principal: Principal,
    /// What sessions and tasks are bound to.
    pub key: PrincipalKey,
    /// The McpClient.
    pub client: ObjectRef,
    /// Its accountable owner (`spec.owner`), for the audit trail.
    pub owner: String,
    /// The token's `jti`, for the audit trail.
    pub token_id: Option<String>,
    /// The McpClient's index in `active.rules.clients` when admitted (set by [`identify`]
    /// only; `None` for a caller its lifecycle refused, named in the audit trail only).
    index: Option<usize>,
}

impl Access {
    /// The policy view of this caller, as admitted when the request started (no second lookup:
    /// the request keeps the rules it was admitted under). `None` for a refused caller.
    pub fn caller(&self) -> Option<Caller<'_>> {
        Caller::admitted(&self.active.rules, self.index?, &self.principal)
    }
}

/// A refused identification: why, and who was calling when the token was good but the
/// McpClient's lifecycle (expired, suspended, review overdue …) refuses it.
#[derive(Debug)]
pub struct Refusal {
    /// The answer.
    pub denial: Denial,
    /// The authenticated caller, for the audit trail (never for access).
    pub who: Option<Box<Access>>,
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Self { denial, who: None }
    }
}

/// Authenticates a request and checks the McpClient's lifecycle at `now`.
pub async fn identify(
    active: &Arc<Active>,
    auth: &Authenticator,
    settings: &Settings,
    headers: &HeaderMap,
    query: Option<&str>,
    now: Timestamp,
) -> Result<Access, Refusal> {
    let (principal, token_id) = match &settings.anonymous_client {
        Some(name) if !headers.contains_key(header::AUTHORIZATION) => (
            auth::anonymous_principal(&active.rules, name).ok_or_else(|| {
                Denial::Unauthenticated(AuthError::Missing, active.challenge_scope())
            })?,
            None,
        ),
        _ => {
            let verified = auth
                .authenticate(&active.rules, headers, query, now)
                .await
                .map_err(|e| Denial::Unauthenticated(e, active.challenge_scope()))?;
            (verified.principal.clone(), verified.token_id.clone())
        }
    };
    let admitted = mcp_warden_policy::authenticate(&active.rules, &principal, now)
        .map(|caller| (caller.index(), caller.client().object.clone()));
    match admitted {
        Ok((index, client)) => Ok(Access {
            active: active.clone(),
            key: PrincipalKey::of(&principal),
            owner: active.rules.clients[index].owner.clone(),
            principal,
            client,
            token_id,
            index: Some(index),
        }),
        Err(decision) => {
            // Known but refused by its lifecycle: named in the audit record, never admitted.
            let who = decision.client().map(|client| {
                let owner = active.rules.clients.iter().find(|c| c.object == *client);
                Box::new(Access {
                    active: active.clone(),
                    key: PrincipalKey::of(&principal),
                    client: client.clone(),
                    owner: owner.map(|c| c.owner.clone()).unwrap_or_default(),
                    principal,
                    token_id,
                    index: None,
                })
            });
            Err(Refusal {
                denial: Denial::Client(Box::new(decision)),
                who,
            })
        }
    }
}

#[cfg(test)]
impl Access {
    /// An admitted caller, for unit tests.
    pub(crate) fn admitted(active: &Arc<Active>, principal: Principal) -> Self {
        let caller = mcp_warden_policy::authenticate(&active.rules, &principal, Timestamp::now())
            .expect("a test caller in good standing");
        let (index, client) = (caller.index(), caller.client().object.clone());
        Self {
            active: active.clone(),
            key: PrincipalKey::of(&principal),
            owner: active.rules.clients[index].owner.clone(),
            principal,
            client,
            token_id: None,
            index: Some(index),
        }
    }
}
