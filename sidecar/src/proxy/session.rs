//! Session and task ownership: who may use a legacy `Mcp-Session-Id` or a task id.
//!
//! ```text
//! initialize ──upstream answers 2xx + Mcp-Session-Id: S──► bind(S, principal)   (+ protocolVersion, VER-02)
//! request with Mcp-Session-Id: S ──► check(S, principal)
//!     Owned   ──► forward
//!     Foreign ──► 404 {"code":-32001,"message":"Session not found"}   (HTTP-13: no oracle)
//!     Unknown ──► 404 as well: never forwarded, never adopted (see below)
//! upstream 404 for S, or DELETE S answered 2xx ──► forget(S)                       (HTTP-14)
//! tools/call with params.task ──CreateTaskResult.task.taskId T──► bind_task(T, principal)
//! tasks/get|result|cancel|update T ──► Owned? forward : -32602                     (TASK-02)
//! tasks/list ──► result.tasks filtered to Owned
//! a server request relayed to the client in S ──► relayed(S, id); the client's response to
//!     it ──► answering(S, id): a response to nothing the server asked is refused. Without a
//!     session (a stateless server) the same, per principal: no caller answers another's
//! ```
//!
//! The principal key is `issuer|sub|client_id`: a refreshed token of the same principal keeps
//! its sessions. Bindings live in memory. A session the proxy did not see start (another
//! replica's, or from before a restart) is answered 404 like a foreign one: adopting it for the
//! first presenter would hand a leaked session id to whoever presents it first. Clients then
//! start a new session, as the spec requires on 404. Both tables are bounded; above the bound
//! the least recently used entry goes.

use super::{filter::Expect, jsonrpc::Id};
use mcp_warden_policy::Principal;
use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::Mutex,
};

/// How many sessions and tasks are remembered at most.
pub const MAX_ENTRIES: usize = 100_000;
/// How many request ids are remembered per session, with what the proxy must read in their
/// answers (a resumed GET stream may replay them). The answer to a forgotten id is dropped.
pub const MAX_REMEMBERED: usize = 256;

/// The identity sessions and tasks are bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrincipalKey {
    issuer: String,
    subject: Option<String>,
    client_id: Option<String>,
}

impl PrincipalKey {
    /// The key of a principal.
    pub fn of(principal: &Principal) -> Self {
        Self {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
            client_id: principal.client_id.clone(),
        }
    }
}

impl fmt::Display for PrincipalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sub, client) = (self.subject.as_deref(), self.client_id.as_deref());
        write!(
            f,
            "{}|{}|{}",
            self.issuer,
            sub.unwrap_or(""),
            client.unwrap_or("")
        )
    }
}

/// Whether an id belongs to the presenter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Bound to the presenter.
    Owned,
    /// Bound to another principal.
    Foreign,
    /// Not bound (never seen, forgotten, or from before a restart).
    Unknown,
}

#[derive(Debug)]
struct Session {
    owner: PrincipalKey,
    protocol_version: Option<String>,
    /// Request ids forwarded in this session, oldest first, with what their answers need.
    requests: VecDeque<(Id, Option<Expect>)>,
    /// Ids of the server's requests relayed to the client and not yet answered, oldest first.
    server_requests: VecDeque<Id>,
    used: u64,
}

/// Server requests relayed to one principal without a session, not yet answered.
#[derive(Debug)]
struct Relayed {
    ids: VecDeque<Id>,
    used: u64,
}

#[derive(Debug)]
struct Task {
    owner: PrincipalKey,
    used: u64,
}

#[derive(Debug, Default)]
struct Tables {
    sessions: HashMap<String, Session>,
    tasks: HashMap<String, Task>,
    /// SHA-256 of the MRTR `requestState`s the upstream issued, with the caller they went to.
    request_states: HashMap<String, Task>,
    /// Server requests relayed outside any session, per principal.
    sessionless: HashMap<PrincipalKey, Relayed>,
    clock: u64,
}

/// The bindings of one proxy.
#[derive(Debug, Default)]
pub struct Sessions {
    tables: Mutex<Tables>,
}

impl Sessions {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps inconsistent (single inserts).
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Who owns session `id`, relative to `who`.
    pub fn check(&self, id: &str, who: &PrincipalKey) -> Ownership {
        let mut tables = self.lock();
        tables.clock += 1;
        let now = tables.clock;
        match tables.sessions.get_mut(id) {
            None => Ownership::Unknown,
            Some(s) if s.owner == *who => {
                s.used = now;
                Ownership::Owned
            }
            Some(_) => Ownership::Foreign,
        }
    }

    /// Binds session `id` to `who` (keeping what is known when it is already theirs).
    pub fn bind(&self, id: &str, who: &PrincipalKey) {
        let mut tables = self.lock();
        tables.clock += 1;
        let now = tables.clock;
        if let Some(s) = tables.sessions.get_mut(id).filter(|s| s.owner == *who) {
            s.used = now;
            return;
        }
        evict(&mut tables.sessions, |s| s.used);
        tables.sessions.insert(
            id.to_owned(),
            Session {
                owner: who.clone(),
                protocol_version: None,
                requests: VecDeque::new(),
                server_requests: VecDeque::new(),
                used: now,
            },
        );
    }

    /// Forgets session `id`.
    pub fn forget(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    /// Records the version the upstream negotiated for session `id`.
    pub fn set_version(&self, id: &str, version: &str) {
        if let Some(s) = self.lock().sessions.get_mut(id) {
            s.protocol_version = Some(version.to_owned());
        }
    }

    /// The version the upstream negotiated for session `id`.
    pub fn version(&self, id: &str) -> Option<String> {
        self.lock().sessions.get(id)?.protocol_version.clone()
    }

    /// Remembers the request ids forwarded in `session` and what their answers need.
    pub fn remember(&self, session: &str, answers: &HashMap<Id, Option<Expect>>) {
        if answers.is_empty() {
            return;
        }
        if let Some(s) = self.lock().sessions.get_mut(session) {
            for (id, expect) in answers {
                s.requests.retain(|(known, _)| known != id);
                if s.requests.len() >= MAX_REMEMBERED {
                    s.requests.pop_front();
                }
                s.requests.push_back((id.clone(), *expect));
            }
        }
    }

    /// Forgets requests whose answers reached the client: only what a broken stream left
    /// unanswered stays for a resumption to replay.
    pub fn answered<'a>(&self, session: &str, ids: impl IntoIterator<Item = &'a Id>) {
        let mut tables = self.lock();
        if let Some(s) = tables.sessions.get_mut(session) {
            for id in ids {
                s.requests.retain(|(known, _)| known != id);
            }
        }
    }

    /// The server's request `id` was relayed to `who`, in `session` or (a stateless server)
    /// outside any.
    pub fn relayed(&self, session: Option<&str>, who: &PrincipalKey, id: &Id) {
        let mut tables = self.lock();
        tables.clock += 1;
        let now = tables.clock;
        let ids = match session {
            Some(sid) => match tables.sessions.get_mut(sid) {
                Some(s) => &mut s.server_requests,
                None => return,
            },
            None => {
                if !tables.sessionless.contains_key(who) {
                    evict(&mut tables.sessionless, |r| r.used);
                }
                let relayed = tables
                    .sessionless
                    .entry(who.clone())
                    .or_insert_with(|| Relayed {
                        ids: VecDeque::new(),
                        used: now,
                    });
                relayed.used = now;
                &mut relayed.ids
            }
        };
        ids.retain(|known| known != id);
        if ids.len() >= MAX_REMEMBERED {
            ids.pop_front();
        }
        ids.push_back(id.clone());
    }

    /// Whether `who`'s response `id` (in `session`, or outside any) answers a server request
    /// relayed to it there (each is answered once).
    pub fn answering(&self, session: Option<&str>, who: &PrincipalKey, id: &Id) -> bool {
        let mut tables = self.lock();
        let ids = match session {
            Some(sid) => tables.sessions.get_mut(sid).map(|s| &mut s.server_requests),
            None => tables.sessionless.get_mut(who).map(|r| &mut r.ids),
        };
        let Some(ids) = ids else {
            return false;
        };
        match ids.iter().position(|known| known == id) {
            Some(at) => {
                ids.remove(at);
                true
            }
            None => false,
        }
    }

    /// What the answer to `id` in `session` needs (`None`: no such request remembered).
    pub fn recall(&self, session: &str, id: &Id) -> Option<Option<Expect>> {
        let tables = self.lock();
        let s = tables.sessions.get(session)?;
        s.requests
            .iter()
            .rev()
            .find(|(known, _)| known == id)
            .map(|(_, e)| *e)
    }

    /// Binds task `task_id` to `who`. A task id already bound to another principal keeps its
    /// owner: an upstream never hands one task to two callers.
    pub fn bind_task(&self, task_id: &str, who: &PrincipalKey) {
        let mut tables = self.lock();
        tables.clock += 1;
        let now = tables.clock;
        if let Some(t) = tables.tasks.get_mut(task_id) {
            if t.owner == *who {
                t.used = now;
            }
            return;
        }
        evict(&mut tables.tasks, |t| t.used);
        tables.tasks.insert(
            task_id.to_owned(),
            Task {
                owner: who.clone(),
                used: now,
            },
        );
    }

    /// The upstream issued an MRTR `requestState` to `who` (compared as opaque bytes, never
    /// parsed).
    pub fn issue_request_state(&self, state: &str, who: &PrincipalKey) {
        let key = state_key(state);
        let mut tables = self.lock();
        tables.clock += 1;
        let now = tables.clock;
        evict(&mut tables.request_states, |t| t.used);
        tables.request_states.insert(
            key,
            Task {
                owner: who.clone(),
                used: now,
            },
        );
    }

    /// Whether `state` is one the upstream issued to `who` and not yet retried: then it is
    /// used up. An MRTR retry is exempt from quotas only then, so a made-up `requestState`
    /// does not skip them.
    pub fn redeem_request_state(&self, state: &str, who: &PrincipalKey) -> bool {
        let key = state_key(state);
        let mut tables = self.lock();
        match tables.request_states.get(&key) {
            Some(t) if t.owner == *who => tables.request_states.remove(&key).is_some(),
            _ => false,
        }
    }

    /// Who owns task `task_id`, relative to `who`.
    pub fn task(&self, task_id: &str, who: &PrincipalKey) -> Ownership {
        match self.lock().tasks.get(task_id) {
            None => Ownership::Unknown,
            Some(t) if t.owner == *who => Ownership::Owned,
            Some(_) => Ownership::Foreign,
        }
    }

    /// How many sessions are bound.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether no session is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one entry by dropping the least recently used one.
fn state_key(state: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(state.as_bytes()))
}

fn evict<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, used: impl Fn(&V) -> u64) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, v)| used(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_warden_policy::Capability;

    fn key(client: &str) -> PrincipalKey {
        PrincipalKey::of(&Principal {
            issuer: "https://idp".into(),
            subject: Some("user".into()),
            client_id: Some(client.into()),
            ..Principal::default()
        })
    }

    #[test]
    fn sessions_belong_to_their_initializer() {
        let s = Sessions::new();
        let (alice, bob) = (key("alpha"), key("beta"));
        assert_eq!(s.check("S", &alice), Ownership::Unknown);
        s.bind("S", &alice);
        assert_eq!(s.check("S", &alice), Ownership::Owned);
        assert_eq!(s.check("S", &bob), Ownership::Foreign);
        // Binding again by the owner keeps the state; by someone else it rebinds (initialize).
        s.set_version("S", "2025-06-18");
        s.bind("S", &alice);
        assert_eq!(s.version("S").as_deref(), Some("2025-06-18"));
        s.forget("S");
        assert_eq!(s.check("S", &bob), Ownership::Unknown);
        assert!(s.is_empty());
        assert_eq!(alice.to_string(), "https://idp|user|alpha");
    }

    #[test]
    fn request_ids_are_remembered_per_session_bounded_and_forgotten_once_answered() {
        let s = Sessions::new();
        s.bind("S", &key("a"));
        let id = |n: u64| Id::from_value(&n.into()).unwrap();
        for n in 0..(MAX_REMEMBERED as u64 + 10) {
            let expect = (n % 2 == 0).then_some(Expect::List(Capability::Tool));
            s.remember("S", &HashMap::from([(id(n), expect)]));
        }
        assert_eq!(s.recall("S", &id(0)), None, "the oldest is forgotten");
        let last = MAX_REMEMBERED as u64 + 9;
        assert_eq!(s.recall("S", &id(last)), Some(None));
        assert_eq!(
            s.recall("S", &id(last - 1)),
            Some(Some(Expect::List(Capability::Tool)))
        );
        assert_eq!(
            s.recall("T", &id(last)),
            None,
            "another session's ids are not this one's"
        );
        s.answered("S", [&id(last)]);
        assert_eq!(s.recall("S", &id(last)), None);
        s.remember("unbound", &HashMap::from([(id(1), None)]));
        assert_eq!(s.recall("unbound", &id(1)), None);
    }

    #[test]
    fn request_states_are_redeemed_once_by_their_caller() {
        let s = Sessions::new();
        let (alice, bob) = (key("alpha"), key("beta"));
        assert!(!s.redeem_request_state("made-up", &alice));
        s.issue_request_state("opaque-1", &alice);
        assert!(!s.redeem_request_state("opaque-1", &bob), "another caller");
        assert!(s.redeem_request_state("opaque-1", &alice));
        assert!(!s.redeem_request_state("opaque-1", &alice), "used up");
    }

    #[test]
    fn tasks_belong_to_their_creator() {
        let s = Sessions::new();
        let (alice, bob) = (key("alpha"), key("beta"));
        s.bind_task("t1", &alice);
        s.bind_task("t1", &bob);
        assert_eq!(s.task("t1", &alice), Ownership::Owned);
        assert_eq!(s.task("t1", &bob), Ownership::Foreign);
        assert_eq!(s.task("t2", &alice), Ownership::Unknown);
    }

    #[test]
    fn tables_are_bounded_by_least_recent_use() {
        let mut map: HashMap<String, u64> = (0..MAX_ENTRIES as u64)
            .map(|i| (i.to_string(), i + 1))
            .collect();
        map.insert("0".into(), u64::MAX);
        evict(&mut map, |v| *v);
        assert_eq!(map.len(), MAX_ENTRIES - 1);
        assert!(map.contains_key("0") && !map.contains_key("1"));
    }
}
