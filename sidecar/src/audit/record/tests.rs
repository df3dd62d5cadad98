use super::GENESIS;
use super::chain::*;
use super::fields::{Rfc3339Ms, parse_traceparent};
use jiff::Timestamp;
use serde_json::Value;

#[test]
fn traceparent_is_parsed_strictly() {
    assert_eq!(
        parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
    );
    assert_eq!(parse_traceparent("00-xyz-00f067aa0ba902b7-01"), None);
    assert_eq!(parse_traceparent(""), None);
}

#[test]
fn seal_then_hash_round_trips_and_detects_edits() {
    let head = br#"{"a":1,"metadata":{"version":"1.8.0""#;
    let mut line = Vec::new();
    let h = seal(head, "u-1", 7, "inst", &GENESIS, &mut line);
    let v: Value = serde_json::from_slice(&line).unwrap();
    let c = chain_fields(&v).unwrap();
    assert_eq!((c.sequence, c.hash, c.prev), (7, h, GENESIS));
    assert_eq!(line_sequence(&line), Some(7));
    let (claimed, actual) = line_hashes(&line).unwrap();
    assert_eq!((claimed, actual), (h, h));
    let edited = String::from_utf8(line)
        .unwrap()
        .replace("\"a\":1", "\"a\":2");
    let (claimed, actual) = line_hashes(edited.as_bytes()).unwrap();
    assert_ne!(claimed, actual);
    assert_eq!(line_hashes(b"{\"x\":1}"), Err(LineError::NotSealed));
}

#[test]
fn the_sequence_is_read_from_the_seal_of_a_long_line() {
    // A decoy in the data, a long head, the longest instance and sequence the seal allows.
    let head = format!(
        r#"{{"a":"","sequence":7,"b":"{}","metadata":{{"version":"1.8.0""#,
        "x".repeat(5000)
    );
    let mut line = Vec::new();
    seal(
        head.as_bytes(),
        "u-1",
        u64::MAX,
        &"i".repeat(64),
        &GENESIS,
        &mut line,
    );
    assert_eq!(line_sequence(&line), Some(u64::MAX));
    assert_eq!(line_sequence(b"{\"no\":\"seal\"}"), None);
}

#[test]
fn time_dt_has_milliseconds() {
    let t = Timestamp::from_millisecond(1_795_506_591_120).unwrap();
    assert_eq!(Rfc3339Ms(t).to_string(), "2026-11-24T07:49:51.120Z");
}
