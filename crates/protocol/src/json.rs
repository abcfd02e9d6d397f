//! AWS JSON 1.0 and 1.1. Requests and responses need nothing from this
//! crate: the generated types are the JSON (serde straight from the body and
//! back, the hot path). What is here is the error body every JSON service
//! shares, and the `awsQueryCompatible` header.
//!
//! An error is `{"__type": "<Shape>", "message": "…"}` with the error's
//! status. A service whose model has `awsQueryCompatible` (CloudWatch) also
//! sends `x-amzn-query-error: <Query code>;<Sender|Receiver>`: clients built
//! for it (botocore, the AWS SDKs) read the Query code from that header
//! (`InvalidParameterValue`, not the shape name
//! `InvalidParameterValueException`), so code written against the Query
//! protocol keeps matching the same codes. Those clients say so with
//! `x-amzn-query-mode: true` on their requests.

use flotilla_model::wire::schema::ErrorSchema;

pub const CONTENT_TYPE_1_0: &str = "application/x-amz-json-1.0";
pub const CONTENT_TYPE_1_1: &str = "application/x-amz-json-1.1";

/// The header query-compatible services add to errors, and that clients send
/// to ask for it.
pub const QUERY_ERROR_HEADER: &str = "x-amzn-query-error";
pub const QUERY_MODE_HEADER: &str = "x-amzn-query-mode";

/// `{"__type": CODE, "message": MSG}`.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({ "__type": code, "message": message })
        .to_string()
        .into_bytes()
}

/// The JSON error body of a modelled error: `__type` is its shape name.
pub fn encode_error(error: &ErrorSchema, message: &str) -> Vec<u8> {
    error_body(error.shape, message)
}

/// The value of `x-amzn-query-error` for an error: `CODE;Sender`.
pub fn query_error_header(error: &ErrorSchema) -> String {
    format!("{};{}", error.code, error.fault.as_str())
}
