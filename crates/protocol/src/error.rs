//! The two ways a codec fails: a request that does not fit the model
//! ([`DecodeError`], the client's fault) and a response value that does not
//! fit it ([`EncodeError`], ours).

use std::fmt;

/// A request the codec cannot read: it names the parameter (Query: the key as
/// the client sent it, `Tags.member.1.Key`; CBOR: the member path,
/// `MetricData[0].Timestamp`) and the rule it breaks. The front answers it
/// with the protocol's validation error (`ValidationError` for Query,
/// `SerializationException` for JSON and CBOR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    /// Where in the request; empty when the whole body is at fault.
    pub field: String,
    /// What is wrong, worded to follow the field: `must be an integer, not 'x'`.
    pub rule: String,
}

impl DecodeError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        DecodeError {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// A fault of the body as a whole.
    pub fn body(rule: impl Into<String>) -> Self {
        DecodeError {
            field: String::new(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.rule)
        } else {
            write!(f, "{} {}", self.field, self.rule)
        }
    }
}

/// A response value that does not fit its shape (a handler's bug, or a value
/// the protocol cannot carry, like a year past 9999 in an ISO-8601
/// timestamp). The front answers it as an internal error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {field}: {rule}")]
pub struct EncodeError {
    pub field: String,
    pub rule: String,
}

impl EncodeError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        EncodeError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}
