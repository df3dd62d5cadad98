//! Unit tests of `sse`.
use super::*;

/// Runs `input` split into `chunk`-byte pieces; returns the output and the data seen.
fn run(input: &[u8], chunk: usize, target: &[u8], replacement: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut splitter = Splitter::new(1 << 20);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    let mut rewrite = |data: &[u8]| {
        seen.push(String::from_utf8_lossy(data).into_owned());
        (data == target).then(|| replacement.to_vec())
    };
    for piece in input.chunks(chunk.max(1)) {
        splitter.push(piece, &mut out, &mut rewrite).unwrap();
    }
    splitter.finish(&mut out, &mut rewrite);
    (out, seen)
}

const STREAM: &[u8] = b"\xEF\xBB\xBFid: prime-1\ndata:\nretry: 3000\n\n: keep-alive\n\n\
event: message\r\nid: ev-2\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\n\
data:no-space\rdata:  two spaces\r\r\
:comment only\nid\nevent\ndata\n\nunknown: field\nid: 3\ndata: {\"id\":1,\n: inner comment\ndata: \"result\":{}}\n\n";

#[test]
fn untouched_streams_pass_byte_for_byte_at_any_chunking() {
    for chunk in [1, 2, 3, 5, 7, 64, STREAM.len()] {
        let (out, seen) = run(STREAM, chunk, b"never", b"x");
        assert_eq!(out, STREAM, "chunk size {chunk}");
        assert_eq!(
            seen,
            [
                "",
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}",
                "no-space\n two spaces",
                "",
                "{\"id\":1,\n\"result\":{}}"
            ],
            "chunk size {chunk}"
        );
    }
}

#[test]
fn only_the_target_events_data_lines_change() {
    let target = b"{\"id\":1,\n\"result\":{}}";
    for chunk in [1, 4, STREAM.len()] {
        let (out, _) = run(
            STREAM,
            chunk,
            target,
            b"{\"id\":1,\"result\":{\"tools\":[]}}",
        );
        let expected_tail = b"unknown: field\nid: 3\ndata: {\"id\":1,\"result\":{\"tools\":[]}}\n: inner comment\n\n";
        let cut = STREAM.len()
            - b"unknown: field\nid: 3\ndata: {\"id\":1,\n: inner comment\ndata: \"result\":{}}\n\n"
                .len();
        assert_eq!(&out[..cut], &STREAM[..cut]);
        assert_eq!(&out[cut..], expected_tail, "chunk size {chunk}");
    }
}

#[test]
fn crlf_events_keep_crlf_when_rewritten() {
    let input = b"id: 9\r\ndata: {\"a\":1}\r\n\r\n";
    let (out, _) = run(input, 3, b"{\"a\":1}", b"{\"a\":2}\n");
    assert_eq!(out, b"id: 9\r\ndata: {\"a\":2}\r\n\r\n");
}

#[test]
fn lines_before_data_go_out_before_the_event_ends() {
    let mut splitter = Splitter::new(1024);
    let mut out = Vec::new();
    let mut never = |_: &[u8]| None;
    splitter
        .push(
            b": ping\n\nid: 1\nevent: message\ndata: {\"par",
            &mut out,
            &mut never,
        )
        .unwrap();
    assert_eq!(out, b": ping\n\nid: 1\nevent: message\n");
    splitter
        .push(b"tial\":1}\n\n", &mut out, &mut never)
        .unwrap();
    assert_eq!(
        out,
        b": ping\n\nid: 1\nevent: message\ndata: {\"partial\":1}\n\n"
    );
}

#[test]
fn an_unterminated_last_event_passes_as_is_or_rewritten() {
    let (out, _) = run(b"data: a\n\nid: 2\ndata: b", 2, b"never", b"");
    assert_eq!(out, b"data: a\n\nid: 2\ndata: b");
    // A rewritten event writes a lone CR as LF (see `flush`).
    let (out, _) = run(b"id: 2\ndata: b\r", 1, b"b", b"c");
    assert_eq!(out, b"id: 2\ndata: c\n");
    let (out, _) = run(b"\r", 1, b"never", b"");
    assert_eq!(out, b"\r");
    let (out, _) = run(b"\xEF\xBB", 1, b"never", b"");
    assert_eq!(out, b"\xEF\xBB");
}

#[test]
fn oversized_events_fail_instead_of_leaking() {
    let mut splitter = Splitter::new(16);
    let mut out = Vec::new();
    let mut never = |_: &[u8]| None;
    let err = splitter.push(b"data: 0123456789abcdefghij", &mut out, &mut never);
    assert_eq!(err, Err(TooLarge(16)));
}

#[test]
fn any_bytes_at_any_chunking_pass_unchanged_when_nothing_is_rewritten() {
    // A small xorshift generator: deterministic, no dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"data:id event retry\r\n\n: {}\"\xEF\xBB\xBF";
    for _ in 0..2_000 {
        let len = (next() % 200) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let chunk = 1 + (next() % 16) as usize;
        let (out, _) = run(&input, chunk, b"\x00never", b"");
        assert_eq!(out, input, "chunk size {chunk}");
    }
}

/// Seals every id with a `~s` suffix and drops the data `drop`.
struct Sealer;
impl Events for Sealer {
    fn data(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        (data == b"drop").then(Vec::new)
    }
    fn id(&mut self, id: &[u8]) -> Option<Vec<u8>> {
        Some([id, b"~s"].concat())
    }
}

#[test]
fn ids_are_sealed_and_dropped_events_keep_one_empty_data_line() {
    let input =
        b"id: a\ndata: keep\n\nid: b\r\nevent: message\r\ndata: drop\r\n\r\ndata: x\nid:c\n\n";
    for chunk in [1, 3, input.len()] {
        let mut splitter = Splitter::new(1 << 10);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            splitter.push(piece, &mut out, &mut Sealer).unwrap();
        }
        splitter.finish(&mut out, &mut Sealer);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id: a~s\ndata: keep\n\nid: b~s\r\nevent: message\r\ndata:\r\n\r\ndata: x\nid: c~s\n\n",
            "chunk size {chunk}"
        );
    }
}

#[test]
fn a_rewritten_event_keeps_the_blank_line_that_ends_it() {
    // Found by the `sse` fuzz target: a lone CR before the event's blank line.
    for (input, want) in [
        (&b"data: a\rdata: b\n\n"[..], "data: x\n\n"),
        (b"data: a\nid: 5\rdata: b\n\n", "data: x\nid: 5~s\n\n"),
        (
            b"id: 1\rdata: drop\n\ndata: c\n\n",
            "id: 1~s\ndata:\n\ndata: c\n\n",
        ),
        // Data of only line breaks keeps a data line (a BOM line must not move to the start).
        (
            b"data\n\xEF\xBB\xBFid:7\ndata\n\n",
            "data: \n\u{feff}id:7\n\n",
        ),
        // An unterminated last line keeps having no ending (the event is not dispatched).
        (b"data: a\ndata: b\nATad", "data: x\nATad"),
        (b"data\ndata\n\n", "data: \n\n"),
    ] {
        let mut splitter = Splitter::new(1 << 10);
        let mut out = Vec::new();
        let mut events = Replace;
        splitter.push(input, &mut out, &mut events).unwrap();
        splitter.finish(&mut out, &mut events);
        assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
    }
}

/// Rewrites `a\nb` to `x`, drops `drop`, seals ids like [`Sealer`].
struct Replace;
impl Events for Replace {
    fn data(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        match data {
            b"a\nb" | b"a\nb\n" => Some(b"x".to_vec()),
            b"drop" => Some(Vec::new()),
            b"\n" => Some(b"\n".to_vec()),
            _ => None,
        }
    }
    fn id(&mut self, id: &[u8]) -> Option<Vec<u8>> {
        Some([id, b"~s"].concat())
    }
}

#[test]
fn a_long_line_in_small_chunks_is_scanned_once() {
    // 4 MiB of one data line in 1-byte chunks: quadratic rescanning would take minutes.
    let mut splitter = Splitter::new(8 << 20);
    let mut out = Vec::new();
    let mut keep = |_: &[u8]| None;
    let started = std::time::Instant::now();
    splitter.push(b"data: ", &mut out, &mut keep).unwrap();
    let piece = [b'x'; 1];
    for _ in 0..(4 << 20) {
        splitter.push(&piece, &mut out, &mut keep).unwrap();
    }
    splitter.push(b"\n\n", &mut out, &mut keep).unwrap();
    assert_eq!(out.len(), 6 + (4 << 20) + 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // And memory per event is bounded: the same line over the limit fails.
    let mut small = Splitter::new(1 << 10);
    let mut sink = Vec::new();
    let long = vec![b'x'; 2 << 10];
    assert!(small.push(&long, &mut sink, &mut keep).is_err());
}

#[tokio::test]
async fn the_body_adapter_streams_and_propagates_the_end() {
    use http_body_util::{BodyExt, StreamBody};
    let chunks: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"data: 1\n"))),
        Ok(Frame::data(Bytes::from_static(b"\ndata: 2\n\n"))),
    ];
    let inner = StreamBody::new(futures::stream::iter(chunks));
    let body = RewriteBody::new(inner, 1024, |d: &[u8]| (d == b"2").then(|| b"two".to_vec()));
    let collected = body.collect().await.unwrap().to_bytes();
    assert_eq!(&collected[..], b"data: 1\n\ndata: two\n\n");
}
