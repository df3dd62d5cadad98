//! Server-Sent Events pass-through, event by event, byte for byte.
//!
//! ```text
//! upstream chunks ──► Splitter: lines end in CRLF, LF or CR (a CR at a chunk's end waits for
//!                     the next byte); a UTF-8 BOM at the start passes first
//!   each line is scanned once (a partial line keeps its scan position across chunks)
//!   `id:` lines ──► Events::id (the relay seals them to the caller, event_id.rs)
//!   line before the event's first `data:` (id, event, retry, comments) ──► out at once
//!   first `data:` … blank line: held, then
//!        data(data joined by "\n") = None        ──► the held bytes, unchanged
//!        data(data)               = Some(json)  ──► the same lines, the data lines replaced
//!                                                  by `data: <json>` (same line ending)
//!        data(data)               = Some("")    ──► the data lines become one empty `data:`:
//!                                                  no event reaches the client (an answer to
//!                                                  nobody's request)
//! upstream end ──► what is held goes out (rewritten if it has data); nothing is synthesized
//! upstream error ──► the client stream fails too (no clean end is invented)
//! an event above the limit, or without room in the answer budget ──► the stream fails
//! ```
//!
//! Only the response event of a request the proxy must see (a `tools/list` id, …) changes; every
//! other byte, including `id:`, `event:`, `retry:`, keep-alive comments and the empty-data priming
//! events of 2025-11-25 servers, reaches the client as sent (HTTP-07, HTTP-08, LIST-01).

use super::{BoxError, admission::AnswerRoom};
use bytes::Bytes;
use http_body::{Body, Frame};
use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An event bigger than the proxy will hold to inspect it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event exceeds {0} bytes")]
pub struct TooLarge(pub usize);

/// An event the listener's answer budget has no room for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no room to inspect an SSE event of {0} bytes now (too many large answers at once)")]
pub struct NoRoom(pub usize);

/// What a [`Splitter`] asks of each event: new data (`None`: unchanged; empty: dropped) and
/// new `id` values (`None`: unchanged). A closure over the data is an `Events` that keeps ids.
pub trait Events {
    /// The new data of an event.
    fn data(&mut self, data: &[u8]) -> Option<Vec<u8>>;
    /// The new value of an `id` field.
    fn id(&mut self, _id: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

impl<F: FnMut(&[u8]) -> Option<Vec<u8>>> Events for F {
    fn data(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self(data)
    }
}

/// Splits an SSE byte stream into lines and events, holding only the event being inspected.
#[derive(Debug)]
pub struct Splitter {
    pending: Vec<u8>,
    /// How much of `pending` was already searched for a line end.
    scanned: usize,
    held: Vec<(Vec<u8>, bool)>,
    held_bytes: usize,
    data: Vec<u8>,
    has_data: bool,
    started: bool,
    limit: usize,
}

impl Splitter {
    /// A splitter holding at most `limit` bytes of one event.
    pub fn new(limit: usize) -> Self {
        Self {
            pending: Vec::new(),
            scanned: 0,
            held: Vec::new(),
            held_bytes: 0,
            data: Vec::new(),
            has_data: false,
            started: false,
            limit,
        }
    }

    /// Feeds a chunk; appends what can go out now to `out`.
    pub fn push(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<u8>,
        rewrite: &mut impl Events,
    ) -> Result<(), TooLarge> {
        self.pending.extend_from_slice(chunk);
        if !self.started {
            if self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) {
                return Ok(());
            }
            self.started = true;
            if self.pending.starts_with(BOM) {
                out.extend_from_slice(BOM);
                self.pending.drain(..BOM.len());
            }
        }
        let mut start = 0;
        let mut from = self.scanned;
        loop {
            let Some(offset) = self.pending[from..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            else {
                from = self.pending.len();
                break;
            };
            let eol = from + offset;
            let end = if self.pending[eol] == b'\n' {
                eol + 1
            } else if eol + 1 == self.pending.len() {
                from = eol; // a CR at the end: wait to see whether LF follows
                break;
            } else if self.pending[eol + 1] == b'\n' {
                eol + 2
            } else {
                eol + 1
            };
            let line = self.pending[start..end].to_vec();
            self.line(line, eol - start, out, rewrite);
            start = end;
            from = end;
        }
        self.pending.drain(..start);
        self.scanned = from - start;
        if self.held_bytes + self.pending.len() > self.limit {
            return Err(TooLarge(self.limit));
        }
        Ok(())
    }

    /// The bytes held now: the event being inspected and an unfinished line.
    pub fn held(&self) -> usize {
        self.held_bytes + self.pending.len() + self.data.len()
    }

    /// The upstream ended: emits what is left (an unterminated last line or event) as it is,
    /// except that an unterminated event with data is still rewritten.
    pub fn finish(&mut self, out: &mut Vec<u8>, rewrite: &mut impl Events) {
        if !self.started {
            out.append(&mut self.pending);
        }
        let rest = std::mem::take(&mut self.pending);
        self.scanned = 0;
        if !rest.is_empty() {
            let len = rest.len() - usize::from(rest.ends_with(b"\r"));
            self.line(rest, len, out, rewrite);
        }
        self.flush(out, rewrite);
    }

    /// One line: `raw` with its line ending, `len` bytes of content.
    fn line(&mut self, raw: Vec<u8>, len: usize, out: &mut Vec<u8>, rewrite: &mut impl Events) {
        if len == 0 {
            self.flush(out, rewrite);
            out.extend_from_slice(&raw);
            return;
        }
        let (raw, len) = match id_value(&raw[..len]).and_then(|id| rewrite.id(id)) {
            Some(new) => {
                let mut line = b"id: ".to_vec();
                line.extend_from_slice(&new);
                let len = line.len();
                line.extend_from_slice(safe_ending(&raw));
                (line, len)
            }
            None => (raw, len),
        };
        let value = data_value(&raw[..len]);
        let is_data = value.is_some();
        if !self.has_data && !is_data {
            out.extend_from_slice(&raw);
            return;
        }
        if let Some(value) = value {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        self.held_bytes += raw.len();
        self.held.push((raw, is_data));
    }

    /// Ends the held event (if any): rewritten or as it was.
    fn flush(&mut self, out: &mut Vec<u8>, rewrite: &mut impl Events) {
        if !self.has_data {
            return;
        }
        let held = std::mem::take(&mut self.held);
        match rewrite.data(&self.data) {
            None => held.iter().for_each(|(raw, _)| out.extend_from_slice(raw)),
            Some(new) => {
                // Lines move or go: a lone CR ending could meet the LF of the next line and
                // become one CRLF, losing the blank line that ends the event (found by the
                // `sse` fuzz target). Inside a rewritten event every lone CR becomes LF.
                let mut replaced = false;
                for (raw, is_data) in &held {
                    if !is_data {
                        let end = actual_ending(raw);
                        out.extend_from_slice(&raw[..raw.len() - end.len()]);
                        out.extend_from_slice(if end == b"\r" { b"\n" } else { end });
                    } else if !replaced {
                        replaced = true;
                        let eol = safe_ending(raw);
                        if new.is_empty() {
                            // Dropped: one empty `data:` line keeps the event's shape, and an
                            // event whose data is empty is never dispatched.
                            out.extend_from_slice(b"data:");
                            out.extend_from_slice(eol);
                        } else {
                            for line in split_lines(&new) {
                                out.extend_from_slice(b"data: ");
                                out.extend_from_slice(line);
                                out.extend_from_slice(eol);
                            }
                        }
                    }
                }
            }
        }
        self.data.clear();
        self.has_data = false;
        self.held_bytes = 0;
    }
}

/// The value of an `id` field line (one leading space removed), else `None`.
fn id_value(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"id")?;
    match rest.first() {
        None => Some(b""),
        Some(b':') => Some(rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..])),
        Some(_) => None,
    }
}

/// The value of a `data` field line (one leading space removed), else `None`.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"data")?;
    match rest.first() {
        None => Some(b""),
        Some(b':') => Some(rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..])),
        Some(_) => None,
    }
}

/// The ending a line has: CRLF, CR, LF, or none (the last line of a stream).
fn actual_ending(raw: &[u8]) -> &'static [u8] {
    if raw.ends_with(b"\r\n") {
        b"\r\n"
    } else if raw.ends_with(b"\r") {
        b"\r"
    } else if raw.ends_with(b"\n") {
        b"\n"
    } else {
        b""
    }
}

/// A line's ending, with a lone CR written as LF (see `flush`).
fn safe_ending(raw: &[u8]) -> &'static [u8] {
    match line_ending(raw) {
        b"\r" => b"\n",
        eol => eol,
    }
}

fn line_ending(raw: &[u8]) -> &'static [u8] {
    if raw.ends_with(b"\r\n") {
        b"\r\n"
    } else if raw.ends_with(b"\r") {
        b"\r"
    } else {
        b"\n"
    }
}

/// Splits JSON text on line breaks (which JSON only allows as whitespace).
/// Text of only line breaks gives one empty line, so the event keeps a `data:` line where it
/// had one (nothing else moves up in its place: found by the `sse` fuzz target).
fn split_lines(text: &[u8]) -> Vec<&[u8]> {
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        vec![&b""[..]]
    } else {
        lines
    }
}

/// A response body that runs an upstream SSE body through a [`Splitter`] and `rewrite`.
pub struct RewriteBody<B, F> {
    inner: B,
    splitter: Splitter,
    rewrite: F,
    done: bool,
    /// The room the held event takes of the listener's answer budget.
    room: Option<AnswerRoom>,
}

impl<B, F> std::fmt::Debug for RewriteBody<B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewriteBody")
            .field("done", &self.done)
            .finish()
    }
}

impl<B, F> RewriteBody<B, F> {
    /// Wraps `inner`; events larger than `limit` fail the stream.
    pub fn new(inner: B, limit: usize, rewrite: F) -> Self {
        Self {
            inner,
            splitter: Splitter::new(limit),
            rewrite,
            done: false,
            room: None,
        }
    }

    /// Holds what the held event takes in `room`; an event it has no room for fails the stream.
    pub fn holding(mut self, room: Option<AnswerRoom>) -> Self {
        self.room = room;
        self
    }
}

impl<B, F> Body for RewriteBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: Events + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        let mut out = Vec::new();
                        if let Err(e) = this.splitter.push(&chunk, &mut out, &mut this.rewrite) {
                            this.done = true;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        let held = this.splitter.held();
                        if let Some(room) = this.room.as_mut()
                            && !room.hold(held)
                        {
                            this.done = true;
                            return Poll::Ready(Some(Err(NoRoom(held).into())));
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    this.done = true;
                    let mut out = Vec::new();
                    this.splitter.finish(&mut out, &mut this.rewrite);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests;
