//! `proxy::jsonrpc::parse` on arbitrary bytes: never panics; what it accepts is JSON-RPC as
//! serde_json reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden_sidecar::proxy::jsonrpc::{self, Id, Message, ParseError, Payload, code};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match jsonrpc::parse(data) {
        Ok(payload) => {
            // Accepted bodies are JSON, of the shape the payload says.
            let value: Value = serde_json::from_slice(data).expect("accepted a body that is not JSON");
            assert_eq!(payload.is_batch(), value.is_array());
            if let Payload::Batch(messages) = &payload {
                assert!(!messages.is_empty(), "empty batch accepted");
                assert_eq!(Some(messages.len()), value.as_array().map(Vec::len));
            }
            let objects: Vec<&Value> = match &value {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for (message, object) in payload.messages().iter().zip(objects) {
                assert_eq!(object["jsonrpc"], "2.0");
                if let Some(id) = message.id() {
                    // An id is a string or a number, the one in the body, and survives the
                    // round trip through an answer.
                    assert_eq!(Id::from_value(&object["id"]).as_ref(), Some(id));
                    let back = id.to_value();
                    assert!(back.is_string() || back.is_number(), "id {id} answers as {back}");
                    assert_eq!(Id::from_value(&back).as_ref(), Some(id), "id {id} does not round-trip");
                }
                match message {
                    Message::Request { method, params, .. }
                    | Message::Notification { method, params } => {
                        assert_eq!(object["method"].as_str(), Some(method.as_str()));
                        assert_eq!(
                            matches!(message, Message::Request { .. }),
                            object.get("id").is_some()
                        );
                        if let Some(p) = params {
                            assert!(p.is_object() || p.is_array());
                            assert_eq!(Some(p), object.get("params"));
                        }
                    }
                    Message::Response { id } => {
                        assert!(object.get("method").is_none());
                        assert_ne!(object.get("result").is_some(), object.get("error").is_some());
                        if id.is_none() {
                            assert!(object["id"].is_null() && object.get("error").is_some());
                        }
                    }
                }
            }
            let ids = payload.request_ids();
            assert!(ids.len() <= payload.messages().len());
            if let Some(id) = payload.answer_id() {
                assert!(!payload.is_batch() && ids == [id]);
            }
            let _ = payload.label();
        }
        Err(error) => {
            let _ = error.to_string();
            match &error {
                ParseError::Json(_) => {
                    assert_eq!(error.code(), code::PARSE_ERROR);
                    assert!(error.id().is_none());
                }
                ParseError::Invalid { .. } => {
                    assert_eq!(error.code(), code::INVALID_REQUEST);
                    // Only JSON is refused as an invalid request.
                    assert!(serde_json::from_slice::<Value>(data).is_ok());
                }
            }
        }
    }
});
