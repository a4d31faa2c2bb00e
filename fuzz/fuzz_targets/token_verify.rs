//! Fuzz target `token_verify`: any UTF-8 text through `invigil::auth::Verifier::verify`, as
//! sent and, signed with the verifier's own secret, as a token whose header and claims are
//! the fuzzer's.
//!
//! Input: the text is tried as a token as it is; if it holds a newline, the part before is
//! also taken as the JWT header and the part after as the claims, and signed (HS256, "k"), so
//! the fuzzer reaches the claim checks and their reading into an identity, which an unsigned
//! token never passes.

#![no_main]

use std::sync::LazyLock;

use invigil::{
    auth::{Identity, Verifier},
    config::{Secret, Settings},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "k";

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::new(&Secret::new(SECRET), &Settings::defaults().auth).expect("a non-empty secret")
});

static KEY: LazyLock<EncodingKey> =
    LazyLock::new(|| EncodingKey::from_secret(SECRET.as_bytes()).expect("an HMAC key"));

/// Unpadded base64url, as JWT segments are written.
fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(serde::Deserialize)]
struct Granted {
    exp: serde_json::Value,
    role: serde_json::Value,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Unsigned, it can only be refused.
    assert!(VERIFIER.verify(text).is_err(), "accepted an unsigned token");

    let Some((header, claims)) = text.split_once('\n') else {
        return;
    };
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    let Ok(signature) =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &KEY, Algorithm::HS256)
    else {
        return;
    };
    let Ok(identity) = VERIFIER.verify(&format!("{signing_input}.{signature}")) else {
        return;
    };
    // Accepted: the claims must say so. `exp` is required and a number, and the role granted is
    // the role claimed.
    // Only the claims the server reads: other fields are the LMS's business, and may hold what
    // `serde_json::Value` cannot (a number out of f64's range), as the server's parser allows.
    let granted: Granted = serde_json::from_str(claims).expect("accepted claims carry exp and role");
    assert!(
        granted.exp.is_u64(),
        "accepted without a numeric exp: {claims}"
    );
    match identity {
        Identity::Student(_) => assert_eq!(granted.role, "student"),
        Identity::Proctor(_) => assert_eq!(granted.role, "proctor"),
    }
});
