//! The engine's errors, one variant per CloudWatch Logs error code.
//!
//! The handler layer maps a [`LogsError`] to the AWS error shape with
//! [`LogsError::code`] (the `__type`), [`LogsError::is_fault`] (HTTP 500
//! instead of 400) and `to_string()` (the `message`). The two sequence-token
//! errors also carry the model's `expectedSequenceToken` member.

/// An error as CloudWatch Logs reports it. `Display` is the AWS message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsError {
    /// `InvalidParameterException`: a parameter is specified incorrectly.
    #[error("{message}")]
    InvalidParameter { message: String },
    /// `ResourceNotFoundException`.
    #[error("{message}")]
    ResourceNotFound { message: String },
    /// `ResourceAlreadyExistsException`.
    #[error("{message}")]
    ResourceAlreadyExists { message: String },
    /// `LimitExceededException`: too many resources of a kind.
    #[error("{message}")]
    LimitExceeded { message: String },
    /// `DataAlreadyAcceptedException`: the batch was sent again with the
    /// token it was first accepted with (a resend after a lost answer).
    #[error(
        "The given batch of log events has already been accepted. The next batch can be sent with sequenceToken: {}",
        token_text(expected_sequence_token)
    )]
    DataAlreadyAccepted {
        /// `expectedSequenceToken`: the token the next batch must carry.
        expected_sequence_token: Option<String>,
    },
    /// `InvalidSequenceTokenException`.
    #[error(
        "The given sequenceToken is invalid. The next expected sequenceToken is: {}",
        token_text(expected_sequence_token)
    )]
    InvalidSequenceToken {
        /// `expectedSequenceToken`: `None` while the stream has had no batch.
        expected_sequence_token: Option<String>,
    },
    /// `TooManyTagsException` (a resource has at most 50 tags).
    #[error("{message}")]
    TooManyTags {
        message: String,
        /// `resourceName`: the ARN that was being tagged.
        resource_name: String,
    },
    /// `ValidationException` (DeleteLogGroup on a group with deletion
    /// protection).
    #[error("{message}")]
    Validation { message: String },
    /// `ServiceUnavailableException` (HTTP 500): the store could not read or
    /// write its files. The detail is logged, not shown to clients.
    #[error("The service cannot complete the request.")]
    ServiceUnavailable { detail: String },
}

fn token_text(token: &Option<String>) -> &str {
    token.as_deref().unwrap_or("null")
}

impl LogsError {
    /// The AWS error code (`__type`).
    pub fn code(&self) -> &'static str {
        match self {
            LogsError::InvalidParameter { .. } => "InvalidParameterException",
            LogsError::ResourceNotFound { .. } => "ResourceNotFoundException",
            LogsError::ResourceAlreadyExists { .. } => "ResourceAlreadyExistsException",
            LogsError::LimitExceeded { .. } => "LimitExceededException",
            LogsError::DataAlreadyAccepted { .. } => "DataAlreadyAcceptedException",
            LogsError::InvalidSequenceToken { .. } => "InvalidSequenceTokenException",
            LogsError::TooManyTags { .. } => "TooManyTagsException",
            LogsError::Validation { .. } => "ValidationException",
            LogsError::ServiceUnavailable { .. } => "ServiceUnavailableException",
        }
    }

    /// A server-side failure (HTTP 500) rather than a client error (400).
    pub fn is_fault(&self) -> bool {
        matches!(self, LogsError::ServiceUnavailable { .. })
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        LogsError::InvalidParameter {
            message: message.into(),
        }
    }

    pub(crate) fn group_not_found() -> Self {
        LogsError::ResourceNotFound {
            message: "The specified log group does not exist.".into(),
        }
    }

    pub(crate) fn stream_not_found() -> Self {
        LogsError::ResourceNotFound {
            message: "The specified log stream does not exist.".into(),
        }
    }

    pub(crate) fn unavailable(detail: impl std::fmt::Display) -> Self {
        LogsError::ServiceUnavailable {
            detail: detail.to_string(),
        }
    }

    /// The message of a model constraint violation, worded as AWS words it.
    pub(crate) fn constraint(field: &str, value: &str, rule: &str) -> Self {
        LogsError::invalid(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {rule}"
        ))
    }
}

/// What went wrong below the API: SQLite, the file system, a corrupt file.
/// Surfaces to clients as [`LogsError::ServiceUnavailable`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("the log store is closed")]
    Closed,
}

impl From<StoreError> for LogsError {
    fn from(err: StoreError) -> Self {
        LogsError::unavailable(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_are_aws_ones() {
        assert_eq!(
            LogsError::group_not_found().code(),
            "ResourceNotFoundException"
        );
        assert_eq!(
            LogsError::group_not_found().to_string(),
            "The specified log group does not exist."
        );
        assert_eq!(
            LogsError::stream_not_found().to_string(),
            "The specified log stream does not exist."
        );
        let e = LogsError::InvalidSequenceToken {
            expected_sequence_token: Some("42".into()),
        };
        assert_eq!(e.code(), "InvalidSequenceTokenException");
        assert!(e
            .to_string()
            .ends_with("The next expected sequenceToken is: 42"));
        let e = LogsError::DataAlreadyAccepted {
            expected_sequence_token: None,
        };
        assert_eq!(e.code(), "DataAlreadyAcceptedException");
        assert!(e.to_string().ends_with("sequenceToken: null"));
        let e = LogsError::unavailable("disk full");
        assert!(e.is_fault());
        assert!(
            !e.to_string().contains("disk full"),
            "internal detail must not leak"
        );
    }
}
