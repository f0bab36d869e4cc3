//! Why a payload was rejected: one typed value per reason, each naming the field, what was
//! expected and what came, never the topic (the caller logs the topic next to it).

use thiserror::Error;

use super::crypto::CryptoError;
use super::message::MessageType;
use super::topic::TopicKind;

/// A rejected OwnTracks payload.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PayloadError {
    #[error("payload of {size} bytes is larger than the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is a JSON {got}, expected an object")]
    NotAnObject { got: &'static str },
    #[error("missing required field `{field}`")]
    MissingField { field: String },
    #[error("field `{field}`: expected {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("field `{field}`: expected {expected}, got {got}")]
    InvalidValue {
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("a `{message_type}` message is not expected on a `{topic_kind}` topic")]
    UnexpectedOnTopic {
        message_type: MessageType,
        topic_kind: TopicKind,
    },
    #[error("encrypted payload, but no decryption key is set for this device")]
    NoKey,
    #[error("an encrypted payload contains another encrypted payload")]
    NestedEncryption,
    #[error("encrypted payload: {0}")]
    Crypto(#[from] CryptoError),
}

impl PayloadError {
    /// A stable short name for counting rejections by reason (metrics, audit rows).
    pub fn reason(&self) -> &'static str {
        match self {
            PayloadError::TooLarge { .. } => "too_large",
            PayloadError::InvalidJson(_) => "invalid_json",
            PayloadError::NotAnObject { .. } => "not_an_object",
            PayloadError::MissingField { .. } => "missing_field",
            PayloadError::WrongType { .. } => "wrong_type",
            PayloadError::InvalidValue { .. } => "invalid_value",
            PayloadError::UnknownType(_) => "unknown_type",
            PayloadError::UnexpectedOnTopic { .. } => "unexpected_on_topic",
            PayloadError::NoKey => "no_key",
            PayloadError::NestedEncryption => "nested_encryption",
            PayloadError::Crypto(_) => "crypto",
        }
    }
}
