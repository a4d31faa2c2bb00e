//! The wire contract (`PROTOCOL.md` v1): ids, what clients send, what the server sends.
//!
//! The hot path reads top to bottom here: [`inbound::parse`] turns one text frame into an
//! [`inbound::Inbound`] or an error the client is told about; [`status`] builds the STATUS the
//! proctors see; [`outbound`] serializes each frame once, as a [`Frame`] that every receiver
//! shares.

pub mod ids;
pub mod inbound;
pub mod outbound;
pub mod status;

use serde::{Deserialize, Serialize};

/// A serialized text frame, shared by every socket it goes to (cloning is a reference count).
pub type Frame = bytestring::ByteString;

/// The `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidMessage,
    Forbidden,
    RateLimited,
    NotFound,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 4] = [
        ErrorCode::InvalidMessage,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::NotFound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotFound => "not_found",
        }
    }
}

/// Close codes of the contract, plus the standard ones the server uses.
pub mod close {
    /// Normal closure (heartbeat timeout, client asked to close).
    pub const NORMAL: u16 = 1000;
    /// The client broke the WebSocket protocol itself.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A frame or message above the size limit.
    pub const TOO_LARGE: u16 = 1009;
    /// The server is draining: reconnect (to another instance).
    pub const DRAINING: u16 = 1012;
    /// The socket could not keep up with its traffic (slow consumer): reconnect and resync.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Policy: sustained rate limiting or repeated invalid messages.
    pub const POLICY: u16 = 4008;
    /// A newer connection took over the same attempt.
    pub const REPLACED: u16 = 4009;
}

/// `user_status` of a STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Away,
    Offline,
}

impl UserStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "away" => Some(UserStatus::Away),
            "offline" => Some(UserStatus::Offline),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Away => "away",
            UserStatus::Offline => "offline",
        }
    }
}

/// Why the server itself set a student `offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    Disconnected,
    Timeout,
    InstanceLost,
}

impl OfflineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OfflineReason::Disconnected => "disconnected",
            OfflineReason::Timeout => "timeout",
            OfflineReason::InstanceLost => "instance_lost",
        }
    }
}

/// `kind` of a proctor message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Chat,
    Warning,
}

impl MessageKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(MessageKind::Chat),
            "warning" => Some(MessageKind::Warning),
            _ => None,
        }
    }
}
