//! Who a connection is: JWT verification (HS256, shared with the LMS), token minting for the
//! `token` command, and the LMS API key.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{
    config::{AuthSettings, Secret},
    protocol::ids::{id_text, AttemptId, AttemptKey, QuizId, UserId},
};

/// The two roles of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Proctor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Proctor => "proctor",
        }
    }
}

/// The claims of a token, as the LMS signs them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "id_text")]
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiz_id: Option<QuizId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<AttemptId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quizzes: Vec<QuizId>,
}

/// A verified student: the one attempt its socket reports on.
#[derive(Debug, Clone)]
pub struct StudentIdentity {
    pub key: AttemptKey,
    pub student: UserId,
    pub name: Option<String>,
}

/// A verified proctor: the quizzes it may watch and message.
#[derive(Debug, Clone)]
pub struct ProctorIdentity {
    pub user: UserId,
    pub name: Option<String>,
    pub quizzes: HashSet<QuizId>,
}

impl ProctorIdentity {
    /// How messages from this proctor are signed: the name, else the user id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.user.as_str())
    }
}

/// What a verified token grants.
#[derive(Debug, Clone)]
pub enum Identity {
    Student(StudentIdentity),
    Proctor(ProctorIdentity),
}

impl Identity {
    pub fn role(&self) -> Role {
        match self {
            Identity::Student(_) => Role::Student,
            Identity::Proctor(_) => Role::Proctor,
        }
    }
}

/// Why a token was refused; the text is safe to show the client (it never holds the token).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing token: pass ?token=JWT or an Authorization: Bearer header")]
    Missing,
    #[error("token has expired")]
    Expired,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token is for another audience (aud)")]
    WrongAudience,
    #[error("token is from another issuer (iss)")]
    WrongIssuer,
    #[error("malformed token: {0}")]
    Malformed(String),
}

/// The JWT secret is empty: no token could be verified.
#[derive(Debug, thiserror::Error)]
#[error("the JWT secret is empty")]
pub struct EmptySecret;

/// Verifies tokens with the shared secret (and, during a rotation, the previous one).
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    /// The secret before a rotation, and until when it is accepted (seconds; 0 = always).
    previous: Option<(DecodingKey, u64)>,
    validation: Validation,
}

impl Verifier {
    /// A verifier for `secret`, which must not be empty, with the checks of `settings`:
    /// `exp` required, `nbf` when present, `aud` and `iss` when configured.
    pub fn new(secret: &Secret, settings: &AuthSettings) -> Result<Self, EmptySecret> {
        let key = DecodingKey::from_secret(secret.expose().as_bytes()).map_err(|_| EmptySecret)?;
        let previous = if settings.previous_jwt_secret.is_empty() {
            None
        } else {
            let old = DecodingKey::from_secret(settings.previous_jwt_secret.expose().as_bytes())
                .map_err(|_| EmptySecret)?;
            Some((old, settings.previous_jwt_secret_until))
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if settings.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&settings.audience]);
        }
        if !settings.issuer.is_empty() {
            validation.set_issuer(&[&settings.issuer]);
        }
        Ok(Verifier {
            key,
            previous,
            validation,
        })
    }

    /// Verify a token and turn its claims into what they grant.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let decoded = match self.decode(token, &self.key) {
            Err(AuthError::BadSignature) => match &self.previous {
                Some((old, until)) if *until == 0 || crate::now_ms() / 1000 < *until => {
                    self.decode(token, old)
                }
                _ => Err(AuthError::BadSignature),
            },
            other => other,
        };
        identity(decoded?)
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    ErrorKind::InvalidAudience => AuthError::WrongAudience,
                    ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                    ErrorKind::Json(err) => AuthError::Malformed(format!("claims: {err}")),
                    ErrorKind::MissingRequiredClaim(c) => {
                        AuthError::Malformed(format!("missing claim {c}"))
                    }
                    other => AuthError::Malformed(format!("{other:?}")),
                }
            })?;
        Ok(data.claims)
    }
}

fn identity(claims: Claims) -> Result<Identity, AuthError> {
    let user = UserId::new(&claims.sub);
    match claims.role {
        Role::Student => {
            let (Some(quiz), Some(attempt)) = (claims.quiz_id, claims.attempt_id) else {
                return Err(AuthError::Malformed(
                    "a student token needs quiz_id and attempt_id".into(),
                ));
            };
            Ok(Identity::Student(StudentIdentity {
                key: AttemptKey { quiz, attempt },
                student: user,
                name: claims.name,
            }))
        }
        Role::Proctor => Ok(Identity::Proctor(ProctorIdentity {
            user,
            name: claims.name,
            quizzes: claims.quizzes.into_iter().collect(),
        })),
    }
}

/// Sign claims with the shared secret (the `token` command, tests and the demo).
pub fn mint(secret: &Secret, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    let key = EncodingKey::from_secret(secret.expose().as_bytes())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
}

/// The LMS backend's key for the HTTP API; `None` when the config sets none.
#[derive(Clone, Debug)]
pub struct ApiKey(Option<Secret>);

impl ApiKey {
    pub fn new(secret: &Secret) -> Self {
        ApiKey((!secret.is_empty()).then(|| secret.clone()))
    }

    /// Compare in constant time (for keys of equal length; a length mismatch answers at once,
    /// which reveals only the length).
    pub fn matches(&self, presented: &str) -> bool {
        match &self.0 {
            Some(key) => key.expose().as_bytes().ct_eq(presented.as_bytes()).into(),
            None => false,
        }
    }
}

/// A random secret for a run with none configured: 256 bits, hex.
pub fn random_secret() -> Secret {
    Secret::new(format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn verifier(secret: &str) -> Verifier {
        Verifier::new(&Secret::new(secret), &Settings::defaults().auth).unwrap()
    }

    fn claims(role: Role, exp: u64) -> Claims {
        Claims {
            sub: "s1".into(),
            role,
            exp,
            quiz_id: Some(QuizId::new("q1")),
            attempt_id: Some(AttemptId::new("a1")),
            name: Some("Ann".into()),
            quizzes: vec![QuizId::new("q1")],
        }
    }

    fn far_future() -> u64 {
        crate::now_ms() / 1000 + 3600
    }

    #[test]
    fn student_token_round_trips() {
        let token = mint(&Secret::new("k"), &claims(Role::Student, far_future())).unwrap();
        match verifier("k").verify(&token).unwrap() {
            Identity::Student(s) => {
                assert_eq!(s.key.quiz.as_str(), "q1");
                assert_eq!(s.key.attempt.as_str(), "a1");
                assert_eq!(s.student.as_str(), "s1");
            }
            other => panic!("expected a student, got {other:?}"),
        }
    }

    #[test]
    fn refusals_name_their_reason() {
        let good = mint(&Secret::new("k"), &claims(Role::Proctor, far_future())).unwrap();
        assert_eq!(
            verifier("other").verify(&good).unwrap_err(),
            AuthError::BadSignature
        );
        let old = mint(&Secret::new("k"), &claims(Role::Proctor, 1_000_000)).unwrap();
        assert_eq!(verifier("k").verify(&old).unwrap_err(), AuthError::Expired);
        assert!(matches!(
            verifier("k").verify("not.a.token"),
            Err(AuthError::Malformed(_))
        ));
        let mut c = claims(Role::Student, far_future());
        c.attempt_id = None;
        let no_attempt = mint(&Secret::new("k"), &c).unwrap();
        assert!(matches!(
            verifier("k").verify(&no_attempt),
            Err(AuthError::Malformed(_))
        ));
    }

    fn sign(payload: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn nbf_aud_and_iss_are_checked() {
        let now = crate::now_ms() / 1000;
        let base =
            serde_json::json!({"sub": "p", "role": "proctor", "exp": now + 600, "quizzes": ["q1"]});
        let mut settings = Settings::defaults().auth;
        settings.audience = "invigil".into();
        settings.issuer = "lms.example.edu".into();
        let v = Verifier::new(&Secret::new("k"), &settings).unwrap();
        let with = |extra: serde_json::Value| {
            let mut p = base.clone();
            p.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            sign(p, b"k")
        };
        let good = serde_json::json!({"aud": "invigil", "iss": "lms.example.edu"});
        assert!(v.verify(&with(good)).is_ok());
        let early =
            serde_json::json!({"aud": "invigil", "iss": "lms.example.edu", "nbf": now + 300});
        assert_eq!(v.verify(&with(early)).unwrap_err(), AuthError::NotYetValid);
        let aud = serde_json::json!({"aud": "other", "iss": "lms.example.edu"});
        assert_eq!(v.verify(&with(aud)).unwrap_err(), AuthError::WrongAudience);
        let iss = serde_json::json!({"aud": "invigil", "iss": "elsewhere"});
        assert_eq!(v.verify(&with(iss)).unwrap_err(), AuthError::WrongIssuer);
    }

    #[test]
    fn the_previous_secret_works_until_its_deadline() {
        let now = crate::now_ms() / 1000;
        let token = sign(
            serde_json::json!({"sub": "p", "role": "proctor", "exp": now + 600, "quizzes": ["q1"]}),
            b"old",
        );
        let mut settings = Settings::defaults().auth;
        settings.previous_jwt_secret = Secret::new("old");
        settings.previous_jwt_secret_until = now + 60;
        assert!(Verifier::new(&Secret::new("new"), &settings)
            .unwrap()
            .verify(&token)
            .is_ok());
        settings.previous_jwt_secret_until = now - 1;
        assert_eq!(
            Verifier::new(&Secret::new("new"), &settings)
                .unwrap()
                .verify(&token)
                .unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            verifier("new").verify(&token).unwrap_err(),
            AuthError::BadSignature
        );
    }

    #[test]
    fn numeric_ids_in_claims_are_accepted() {
        let payload = serde_json::json!({"sub": 42, "role": "student", "exp": far_future(),
            "quiz_id": 7, "attempt_id": 9});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(b"k").unwrap(),
        )
        .unwrap();
        let Identity::Student(s) = verifier("k").verify(&token).unwrap() else {
            panic!("expected a student")
        };
        assert_eq!(s.key.to_string(), "7/9");
        assert_eq!(s.student.as_str(), "42");
    }

    #[test]
    fn api_key_matches_only_itself() {
        let key = ApiKey::new(&Secret::new("lms-key"));
        assert!(key.matches("lms-key"));
        assert!(!key.matches("lms-kez"));
        assert!(!key.matches(""));
        assert!(!ApiKey::new(&Secret::new("")).matches(""));
    }
}
