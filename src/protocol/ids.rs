//! Domain ids of the contract: quizzes, attempts, students, connections.
//!
//! Ids are cheap to clone (`Arc<str>`) because every routed message carries them. The LMS may
//! issue numeric ids; [`id_text`] reads a JSON string or number into the same text form so a
//! token's `quiz_id: 7` and a status's `"quiz_id": "7"` name the same quiz.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(value: impl AsRef<str>) -> Self {
                $name(Arc::from(value.as_ref()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                id_text(d).map($name::new)
            }
        }
    };
}

id_type!(
    /// A quiz: the unit a proctor watches.
    QuizId
);
id_type!(
    /// One student's attempt at a quiz: the unit a student socket reports on.
    AttemptId
);
id_type!(
    /// A user id (`sub`); for a student, the `student_id` of its statuses.
    UserId
);
id_type!(
    /// One WebSocket connection on one instance.
    ConnectionId
);
id_type!(
    /// One server process in a cluster.
    InstanceId
);

/// The attempt a student socket reports on; the routing key for messages to students.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct AttemptKey {
    pub quiz: QuizId,
    pub attempt: AttemptId,
}

impl fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.quiz, self.attempt)
    }
}

/// Read a JSON string or number as id text.
pub fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(i64),
        UInt(u64),
    }
    match Raw::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a string or an integer id"))?
    {
        Raw::Text(s) => Ok(s),
        Raw::Int(n) => Ok(n.to_string()),
        Raw::UInt(n) => Ok(n.to_string()),
    }
}

impl ConnectionId {
    /// A fresh random connection id (128 bits, hex).
    pub fn generate() -> Self {
        ConnectionId::new(format!("{:032x}", rand::random::<u128>()))
    }
}

impl InstanceId {
    /// A fresh instance id: short, readable in logs, unique enough for a cluster.
    pub fn generate() -> Self {
        InstanceId::new(format!("inv-{:08x}", rand::random::<u32>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_strings_and_integers_alike() {
        let a: QuizId = serde_json::from_str("\"7\"").unwrap();
        let b: QuizId = serde_json::from_str("7").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<QuizId>("[1]").is_err());
        assert!(serde_json::from_str::<QuizId>("1.5").is_err());
    }
}
