//! The one place where failures become the AWS error shape.
//!
//! Handlers return [`ApiError`]; the HTTP front turns it into
//! `{"__type": CODE, "message": MESSAGE}` with the `X-Amzn-ErrorType` header,
//! HTTP 400 for client errors and 500 for `ServerException`. An error shape
//! with members beyond `message` (CloudWatch Logs'
//! `expectedSequenceToken`, `resourceName`) carries them in
//! [`ApiError::fields`]; the JSON protocols put them beside `message`.

use flotilla_model::ShapeViolation;

/// An error in the AWS shape: a code from the service model and a message
/// that says what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    /// The error shape's other members, by their model names (string
    /// members only: no error Flotilla sends has another kind).
    pub fields: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The same error with the member `name` of its shape set to `value`.
    pub fn with_field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// `ClientException`: the request cannot be served as asked.
    pub fn client(message: impl Into<String>) -> Self {
        Self::new("ClientException", message)
    }

    /// `InvalidParameterException`: a parameter breaks a rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }

    /// `ServerException`: our fault, HTTP 500; SDKs retry it.
    pub fn server(message: impl Into<String>) -> Self {
        Self::new("ServerException", message)
    }

    pub fn cluster_not_found() -> Self {
        Self::new("ClusterNotFoundException", "Cluster not found.")
    }

    pub fn service_not_found() -> Self {
        Self::new("ServiceNotFoundException", "Service not found.")
    }

    pub fn service_not_active() -> Self {
        Self::new("ServiceNotActiveException", "Service was not ACTIVE.")
    }

    /// The HTTP status of this error: 500 for our faults, 400 for the caller's.
    pub fn status(&self) -> u16 {
        if self.code == "ServerException" {
            500
        } else {
            400
        }
    }
}

impl From<ShapeViolation> for ApiError {
    fn from(v: ShapeViolation) -> Self {
        ApiError::invalid(v.to_string())
    }
}

impl From<flotilla_model::task_definition::TaskDefinitionError> for ApiError {
    fn from(e: flotilla_model::task_definition::TaskDefinitionError) -> Self {
        ApiError::new(e.code.as_str(), e.message)
    }
}

impl From<flotilla_store::StoreError> for ApiError {
    fn from(e: flotilla_store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ApiError::server("The store failed to commit the change; nothing was acknowledged.")
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
