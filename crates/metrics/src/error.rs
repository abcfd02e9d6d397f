//! The crate's one error type, mapping 1:1 onto the CloudWatch model's
//! error shapes, so the handler layer only picks the protocol's spelling:
//! [`MetricsError::shape`] for the JSON 1.0 and CBOR `__type`,
//! [`MetricsError::code`] for Query (and `x-amzn-query-error` under
//! `awsQueryCompatible`), [`MetricsError::http_status`] for the status line.
//! Messages follow AWS's wording where it is known and always name the field
//! and the rule.

/// A CloudWatch error. Client errors carry AWS's message; storage failures
/// become `InternalServiceFault` and nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `InvalidParameterValueException` (code `InvalidParameterValue`, 400).
    #[error("{0}")]
    InvalidParameterValue(String),
    /// `InvalidParameterCombinationException` (`InvalidParameterCombination`, 400).
    #[error("{0}")]
    InvalidParameterCombination(String),
    /// `MissingRequiredParameterException` (`MissingParameter`, 400).
    #[error("{0}")]
    MissingParameter(String),
    /// `ResourceNotFound` (404): an alarm named in SetAlarmState and the like.
    #[error("{0}")]
    ResourceNotFound(String),
    /// `ResourceNotFoundException` (404): the tagging operations' shape,
    /// with `ResourceType` and `ResourceId` members.
    #[error("{message}")]
    ResourceNotFoundException {
        resource_type: String,
        resource_id: String,
        message: String,
    },
    /// `InvalidNextToken` (400).
    #[error("{0}")]
    InvalidNextToken(String),
    /// `InvalidFormatFault` (`InvalidFormat`, 400): StateReasonData that is
    /// not JSON.
    #[error("{0}")]
    InvalidFormat(String),
    /// `LimitExceededFault` (`LimitExceeded`, 400): the alarm quota.
    #[error("{0}")]
    LimitExceeded(String),
    /// `InternalServiceFault` (`InternalServiceError`, 500): the store failed;
    /// nothing of the request was acknowledged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl MetricsError {
    /// The Query protocol's error code (`<Code>`), from the model's
    /// `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            MetricsError::InvalidParameterValue(_) => "InvalidParameterValue",
            MetricsError::InvalidParameterCombination(_) => "InvalidParameterCombination",
            MetricsError::MissingParameter(_) => "MissingParameter",
            MetricsError::ResourceNotFound(_) => "ResourceNotFound",
            MetricsError::ResourceNotFoundException { .. } => "ResourceNotFoundException",
            MetricsError::InvalidNextToken(_) => "InvalidNextToken",
            MetricsError::InvalidFormat(_) => "InvalidFormat",
            MetricsError::LimitExceeded(_) => "LimitExceeded",
            MetricsError::Internal(_) => "InternalServiceError",
        }
    }

    /// The model's shape name, the `__type` of JSON 1.0 and CBOR errors.
    pub fn shape(&self) -> &'static str {
        match self {
            MetricsError::InvalidParameterValue(_) => "InvalidParameterValueException",
            MetricsError::InvalidParameterCombination(_) => "InvalidParameterCombinationException",
            MetricsError::MissingParameter(_) => "MissingRequiredParameterException",
            MetricsError::ResourceNotFound(_) => "ResourceNotFound",
            MetricsError::ResourceNotFoundException { .. } => "ResourceNotFoundException",
            MetricsError::InvalidNextToken(_) => "InvalidNextToken",
            MetricsError::InvalidFormat(_) => "InvalidFormatFault",
            MetricsError::LimitExceeded(_) => "LimitExceededFault",
            MetricsError::Internal(_) => "InternalServiceFault",
        }
    }

    /// The HTTP status the model gives the shape.
    pub fn http_status(&self) -> u16 {
        match self {
            MetricsError::ResourceNotFound(_) | MetricsError::ResourceNotFoundException { .. } => {
                404
            }
            MetricsError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// `Sender` for client faults, `Receiver` for ours (the Query `<Type>`).
    pub fn is_client_fault(&self) -> bool {
        !matches!(self, MetricsError::Internal(_))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> MetricsError {
        MetricsError::InvalidParameterValue(message.into())
    }

    pub(crate) fn combination(message: impl Into<String>) -> MetricsError {
        MetricsError::InvalidParameterCombination(message.into())
    }

    /// "The parameter X is required."
    pub(crate) fn missing(field: &str) -> MetricsError {
        MetricsError::MissingParameter(format!("The parameter {field} is required."))
    }

    pub(crate) fn bad_token() -> MetricsError {
        MetricsError::InvalidNextToken(
            "The service couldn't process your request because the NextToken is invalid.".into(),
        )
    }

    pub(crate) fn alarm_not_found(name: &str) -> MetricsError {
        MetricsError::ResourceNotFound(format!("Alarm {name} not found"))
    }
}

impl From<rusqlite::Error> for MetricsError {
    fn from(e: rusqlite::Error) -> MetricsError {
        MetricsError::Internal(format!("metric store: {e}"))
    }
}

impl From<std::io::Error> for MetricsError {
    fn from(e: std::io::Error) -> MetricsError {
        MetricsError::Internal(format!("metric store: {e}"))
    }
}

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Checks a string member's length against the model's `min`/`max` (in
/// characters, as AWS counts them).
pub(crate) fn check_len(value: &str, field: &str, min: usize, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len < min {
        if min == 1 {
            return Err(MetricsError::invalid(format!(
                "The parameter {field} must not be empty."
            )));
        }
        return Err(MetricsError::invalid(format!(
            "The parameter {field} must be at least {min} characters long."
        )));
    }
    if len > max {
        return Err(MetricsError::invalid(format!(
            "The parameter {field} must be shorter than {} characters.",
            max + 1
        )));
    }
    Ok(())
}

/// "The collection X must not have a size greater than N."
pub(crate) fn check_count<T>(items: &[T], field: &str, max: usize) -> Result<()> {
    if items.len() > max {
        return Err(MetricsError::invalid(format!(
            "The collection {field} must not have a size greater than {max}."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_model_shape() {
        let cases = [
            (
                MetricsError::invalid("x"),
                "InvalidParameterValue",
                "InvalidParameterValueException",
                400,
            ),
            (
                MetricsError::combination("x"),
                "InvalidParameterCombination",
                "InvalidParameterCombinationException",
                400,
            ),
            (
                MetricsError::missing("Namespace"),
                "MissingParameter",
                "MissingRequiredParameterException",
                400,
            ),
            (
                MetricsError::alarm_not_found("a"),
                "ResourceNotFound",
                "ResourceNotFound",
                404,
            ),
            (
                MetricsError::bad_token(),
                "InvalidNextToken",
                "InvalidNextToken",
                400,
            ),
            (
                MetricsError::InvalidFormat("x".into()),
                "InvalidFormat",
                "InvalidFormatFault",
                400,
            ),
            (
                MetricsError::LimitExceeded("x".into()),
                "LimitExceeded",
                "LimitExceededFault",
                400,
            ),
            (
                MetricsError::Internal("x".into()),
                "InternalServiceError",
                "InternalServiceFault",
                500,
            ),
        ];
        for (err, code, shape, status) in cases {
            assert_eq!(
                (err.code(), err.shape(), err.http_status()),
                (code, shape, status)
            );
        }
        assert_eq!(
            MetricsError::missing("Namespace").to_string(),
            "The parameter Namespace is required."
        );
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        assert!(check_len("ééé", "Name", 1, 3).is_ok());
        assert!(check_len("", "Name", 1, 3).is_err());
        let err = check_len("abcd", "MetricData.member.1.MetricName", 1, 3).unwrap_err();
        assert!(err.to_string().contains("MetricData.member.1.MetricName"));
    }
}
