//! What the session tables say about one payload, read once before it is decided, so that the
//! decision itself ([`super::decide`]) reads no shared state.
//!
//! ```text
//! payload ──► Facts::gather(sessions, session, caller's key)
//!   a response {id}        ──► Sessions::answering: answers a server request relayed to this
//!                              caller on this session, or outside any (a stateless server);
//!                              each one is answered once: consumed here
//!   params.taskId (string) ──► Sessions::task: the caller created that task
//! ```

use super::super::{
    jsonrpc::{Id, Message},
    session::{Ownership, PrincipalKey, Sessions},
};

/// The session facts one payload's decisions need.
#[derive(Debug, Default)]
pub struct Facts {
    /// Ids of the payload's responses that answer a server request relayed to the caller.
    answering: Vec<Id>,
    /// Task ids the payload names that belong to the caller.
    owned_tasks: Vec<String>,
}

impl Facts {
    /// Reads what `messages` need from the session tables.
    pub fn gather(
        sessions: &Sessions,
        session: Option<&str>,
        key: &PrincipalKey,
        messages: &[Message],
    ) -> Self {
        let mut facts = Self::default();
        for message in messages {
            if let Message::Response { id: Some(id), .. } = message
                && sessions.answering(session, key, id)
            {
                facts.answering.push(id.clone());
            }
            if let Some(task) = message.param_str("taskId")
                && sessions.task(task, key) == Ownership::Owned
            {
                facts.owned_tasks.push(task.to_owned());
            }
        }
        facts
    }

    /// Whether the response `id` answers a server request relayed to the caller (on its
    /// session, or outside any for a stateless server).
    pub fn answers(&self, id: &Id) -> bool {
        self.answering.contains(id)
    }

    /// Whether the caller created the task `task`.
    pub fn owns(&self, task: &str) -> bool {
        self.owned_tasks.iter().any(|t| t == task)
    }
}
