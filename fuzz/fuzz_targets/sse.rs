//! `proxy::sse::Splitter` on an arbitrary stream cut into arbitrary chunks.
//!
//! Input: byte 0 seeds the chunk sizes, byte 1 bounds them, the rest is the upstream stream.
//! * rewrite "filter nothing" (`None`): the output is the input, byte for byte, at any chunking;
//!   and every event a client dispatches (WHATWG EventSource parsing, below) was shown to the
//!   rewrite with the same data, in order: nothing reaches a client unseen by the filter;
//! * rewrite identity (`Some(data)`): the client dispatches the same events (type, data, last
//!   id), data compared without empty lines (the rewrite re-emits JSON, one line per non-empty
//!   line);
//! * a small event limit: `TooLarge` or not, what went out is a prefix of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden_sidecar::proxy::sse::Splitter;

/// The chunks `data` is cut into: sizes from a xorshift seeded by `seed`, at most `max` bytes.
fn chunks(data: &[u8], seed: u8, max: u8) -> Vec<&[u8]> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(seed).wrapping_mul(0x0100_0000_01B3);
    let max = usize::from(max % 64) + 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (1 + (state % max as u64) as usize).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// Runs the splitter; `Err` with the output so far when an event is too large.
fn run(
    pieces: &[&[u8]],
    limit: usize,
    rewrite: &mut impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, Vec<u8>> {
    let mut splitter = Splitter::new(limit);
    let mut out = Vec::new();
    for piece in pieces {
        if splitter.push(piece, &mut out, rewrite).is_err() {
            return Err(out);
        }
    }
    splitter.finish(&mut out, rewrite);
    Ok(out)
}

#[derive(Debug, PartialEq)]
struct Event {
    kind: Vec<u8>,
    data: Vec<u8>,
    last_id: Vec<u8>,
}

/// The events a WHATWG EventSource dispatches from `stream` (bytes, not decoded: decoding cannot
/// create or remove CR, LF or colons). An event not ended by a blank line is discarded at EOF.
fn dispatched(stream: &[u8]) -> Vec<Event> {
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    let (mut kind, mut data, mut last_id) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = Vec::new();
    let mut rest = stream;
    while let Some(eol) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let line = &rest[..eol];
        let skip = if rest[eol] == b'\r' && rest.get(eol + 1) == Some(&b'\n') { 2 } else { 1 };
        rest = &rest[eol + skip..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop(); // the trailing LF
                if !data.is_empty() {
                    let kind = if kind.is_empty() { b"message".to_vec() } else { std::mem::take(&mut kind) };
                    events.push(Event { kind, data: std::mem::take(&mut data), last_id: last_id.clone() });
                }
            }
            data.clear();
            kind.clear();
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => kind = value.to_vec(),
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"id" if !value.contains(&0) => last_id = value.to_vec(),
            _ => {}
        }
    }
    events
}

/// Data as JSON text compares: lines joined by LF, empty lines dropped.
fn json_lines(data: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.join(&b'\n')
}

fuzz_target!(|input: &[u8]| {
    let [seed, max, stream @ ..] = input else { return };
    let pieces = chunks(stream, *seed, *max);

    // Filter nothing: byte for byte, and the filter saw every event a client dispatches.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let out = run(&pieces, 1 << 20, &mut |d: &[u8]| {
        seen.push(d.to_vec());
        None
    })
    .expect("no event over the limit");
    assert_eq!(out, stream, "a stream nothing rewrites changed");
    let events = dispatched(stream);
    let mut unseen = seen.iter();
    for event in &events {
        assert!(
            unseen.any(|d| *d == event.data),
            "a client dispatches data the filter never saw: {:?} (seen: {:?})",
            String::from_utf8_lossy(&event.data),
            seen.iter().map(|d| String::from_utf8_lossy(d)).collect::<Vec<_>>()
        );
    }

    // Identity rewrite: the same events reach the client.
    let out = run(&pieces, 1 << 20, &mut |d: &[u8]| Some(d.to_vec())).expect("no event over the limit");
    let normalize = |events: Vec<Event>| -> Vec<Event> {
        events
            .into_iter()
            .map(|e| Event { data: json_lines(&e.data), ..e })
            .filter(|e| !e.data.is_empty())
            .collect()
    };
    assert_eq!(
        normalize(dispatched(&out)),
        normalize(events),
        "an identity rewrite changed the events; output {:?}",
        String::from_utf8_lossy(&out)
    );

    // A small limit: whatever went out is a prefix of the input.
    let limit = usize::from(*max);
    match run(&pieces, limit, &mut |_: &[u8]| None) {
        Ok(out) => assert_eq!(out, stream),
        Err(out) => assert!(stream.starts_with(&out), "output before TooLarge is not a prefix"),
    }
});
