//! Fuzz target `inbound_parse`: any UTF-8 text frame through `invigil::protocol::inbound::parse`.
//!
//! Checks, beyond "no panic": a refusal has a non-empty message of bounded length and becomes
//! an `error` frame that is valid JSON with the client's id; an accepted message's id comes
//! back in `ack` as the very text the client wrote.

#![no_main]

use invigil::protocol::{inbound, outbound, ErrorCode};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

/// Longest `Invalid` message, whatever the frame's length: the library quotes at most a
/// short piece of what the client sent and cuts every message at 300 characters.
fn echo_bound(_len: usize) -> usize {
    1024
}

/// A frame read back as JSON without touching its values (`Value` would refuse `1e999`, which a
/// client may send as an id and must get back).
#[derive(serde::Deserialize)]
struct Answer<'a> {
    r#type: &'a str,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer refuses any other), so only UTF-8 gets here.
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    match inbound::parse(frame) {
        Ok(msg) => {
            if let Some(id) = msg.id() {
                let ack = outbound::ack(id);
                let back: Answer = serde_json::from_str(&ack).expect("ack is JSON");
                assert_eq!(back.r#type, "ack");
                assert_eq!(back.id.map(RawValue::get), Some(id.raw().get()));
            }
        }
        Err(invalid) => {
            assert!(!invalid.message.trim().is_empty(), "empty refusal");
            assert!(
                invalid.message.len() <= echo_bound(frame.len()),
                "a {} byte frame refused with a {} byte message",
                frame.len(),
                invalid.message.len()
            );
            let answer = outbound::error(
                invalid.id.as_ref(),
                ErrorCode::InvalidMessage,
                &invalid.message,
            );
            let back: Answer = serde_json::from_str(&answer).expect("error is JSON");
            assert_eq!(back.r#type, "error");
            assert_eq!(
                back.id.map(RawValue::get),
                invalid.id.as_ref().map(|id| id.raw().get())
            );
        }
    }
});
