//! The AWS wire protocols as pure functions: a request body in, the JSON
//! value a generated request type deserializes from out; a response value
//! (`serde_json::to_value` of the generated output type) or an error in, the
//! protocol's status, headers and bytes out. No HTTP, no I/O: the API front
//! owns routing, auth and the socket, and calls these.
//!
//! Every codec walks the service's shape table (`SERVICE` in each module of
//! [`flotilla_model::wire`], generated from the AWS model), so one codec
//! serves every service that speaks its protocol.
//!
//! Where to start reading:
//! - [`query`]: AWS Query requests (`Action=…&Version=…`, `Name.member.N`);
//! - [`xml`]: AWS Query responses and `<ErrorResponse>` errors;
//! - [`cbor`]: Smithy RPC v2 CBOR requests, responses and errors, and what
//!   the front must set around them;
//! - [`json`]: the AWS JSON error body and the `awsQueryCompatible` header
//!   (JSON requests and responses are plain serde on the generated types);
//! - [`Reply`], [`output_reply`], [`error_reply`]: one answer in any
//!   protocol, so the front maps every outcome in one place;
//! - [`common`]: the errors AWS's protocols send that no model lists.
//!
//! How the front calls it, per request (after routing picked `service`,
//! `protocol` and `op`):
//!
//! ```text
//! Query:  form = Form::parse(body or query string)?; op from form.action()
//!         value = query::decode_input(service, op, &form)?
//! CBOR:   value = cbor::decode_input(service, op, body)?
//! JSON:   serde_json straight into the generated type, as today
//! then:   input: T = serde_json::from_value(value)?; input.validate()?; run
//! answer: output_reply(protocol, service, op, &serde_json::to_value(out)?, rid)
//! error:  error_reply(protocol, service, &error_schema, message, rid)
//! ```
//!
//! A [`DecodeError`] is the client's ([`common::malformed_request`] gives the
//! protocol's code for it); an [`EncodeError`] is ours ([`common::INTERNAL_FAILURE`]).

pub mod cbor;
pub mod error;
pub mod json;
pub mod query;
mod scalar;
pub mod xml;

pub use error::{DecodeError, EncodeError};
pub use query::Form;

use flotilla_model::wire::schema::{ErrorSchema, OperationSchema, Protocol, ServiceSchema};
use serde_json::Value;

/// A protocol's answer: status, headers (lower-case names; `content-type`
/// when there is a body, `x-amzn-requestid` always, and the protocol's own)
/// and body. The front copies it onto the HTTP response as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn base_headers(
    protocol: Protocol,
    request_id: &str,
    has_body: bool,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(4);
    if has_body {
        headers.push(("content-type", content_type(protocol).to_string()));
    }
    headers.push(("x-amzn-requestid", request_id.to_string()));
    if protocol == Protocol::RpcV2Cbor {
        headers.push((cbor::PROTOCOL_HEADER, cbor::PROTOCOL.to_string()));
    }
    headers
}

/// The content type of a protocol's bodies.
pub fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::AwsJson1_0 => json::CONTENT_TYPE_1_0,
        Protocol::AwsJson1_1 => json::CONTENT_TYPE_1_1,
        Protocol::AwsQuery => xml::CONTENT_TYPE,
        Protocol::RpcV2Cbor => cbor::CONTENT_TYPE,
    }
}

/// A successful answer (status 200) carrying `output`, the JSON value of the
/// operation's generated output type. For the JSON protocols the body is that
/// value's JSON (the front may as well serialize the typed output itself and
/// use [`json_reply`]).
pub fn output_reply(
    protocol: Protocol,
    service: &ServiceSchema,
    op: &OperationSchema,
    output: &Value,
    request_id: &str,
) -> Result<Reply, EncodeError> {
    let body = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => Some(
            serde_json::to_vec(output)
                .map_err(|e| EncodeError::new("the output", e.to_string()))?,
        ),
        Protocol::AwsQuery => Some(xml::encode_output(service, op, output, request_id)?),
        Protocol::RpcV2Cbor => cbor::encode_output(service, op, output)?,
    };
    let headers = base_headers(protocol, request_id, body.is_some());
    Ok(Reply {
        status: 200,
        headers,
        body: body.unwrap_or_default(),
    })
}

/// A successful JSON answer from a body the front serialized itself.
pub fn json_reply(protocol: Protocol, body: Vec<u8>, request_id: &str) -> Reply {
    Reply {
        status: 200,
        headers: base_headers(protocol, request_id, true),
        body,
    }
}

/// An error in the protocol's shape, with the error's status: `__type` JSON
/// (plus `x-amzn-errortype`), `<ErrorResponse>` XML with the Query code, or a
/// CBOR map with the absolute shape id; `x-amzn-query-error` for JSON and
/// CBOR when the service is `awsQueryCompatible`.
pub fn error_reply(
    protocol: Protocol,
    service: &ServiceSchema,
    error: &ErrorSchema,
    message: &str,
    request_id: &str,
) -> Reply {
    let mut headers = base_headers(protocol, request_id, true);
    let body = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
            headers.push(("x-amzn-errortype", error.shape.to_string()));
            json::encode_error(error, message)
        }
        Protocol::AwsQuery => xml::encode_error(service, error, message, request_id),
        Protocol::RpcV2Cbor => cbor::encode_error(service, error, message),
    };
    if service.query_compatible && protocol != Protocol::AwsQuery {
        headers.push((json::QUERY_ERROR_HEADER, json::query_error_header(error)));
    }
    Reply {
        status: error.status,
        headers,
        body,
    }
}

/// The errors every AWS protocol sends that no service model lists (AWS's
/// "Common Errors" pages), for the front's own rejections.
pub mod common {
    use super::*;

    /// Query: a parameter that does not fit (what [`DecodeError`] becomes).
    pub const VALIDATION_ERROR: ErrorSchema = ErrorSchema::common("ValidationError", 400);
    /// JSON and CBOR: a body that does not fit (what [`DecodeError`] becomes).
    pub const SERIALIZATION_EXCEPTION: ErrorSchema =
        ErrorSchema::common("SerializationException", 400);
    /// JSON and CBOR: an operation the service does not have.
    pub const UNKNOWN_OPERATION: ErrorSchema =
        ErrorSchema::common("UnknownOperationException", 400);
    /// Query: an `Action` the service does not have.
    pub const INVALID_ACTION: ErrorSchema = ErrorSchema::common("InvalidAction", 400);
    /// Query: no `Action` at all.
    pub const MISSING_ACTION: ErrorSchema = ErrorSchema::common("MissingAction", 400);
    /// Query: a required parameter is absent.
    pub const MISSING_PARAMETER: ErrorSchema = ErrorSchema::common("MissingParameter", 400);
    pub const ACCESS_DENIED: ErrorSchema = ErrorSchema::common("AccessDeniedException", 400);
    pub const THROTTLING: ErrorSchema = ErrorSchema::common("ThrottlingException", 400);
    /// Something failed on our side (what [`EncodeError`] becomes).
    pub const INTERNAL_FAILURE: ErrorSchema = ErrorSchema::common("InternalFailure", 500);
    pub const SERVICE_UNAVAILABLE: ErrorSchema = ErrorSchema::common("ServiceUnavailable", 503);

    /// The error a [`DecodeError`] is sent as in `protocol`.
    pub fn malformed_request(protocol: Protocol) -> &'static ErrorSchema {
        match protocol {
            Protocol::AwsQuery => &VALIDATION_ERROR,
            _ => &SERIALIZATION_EXCEPTION,
        }
    }

    /// The error an unknown operation is sent as in `protocol`.
    pub fn unknown_operation(protocol: Protocol) -> &'static ErrorSchema {
        match protocol {
            Protocol::AwsQuery => &INVALID_ACTION,
            _ => &UNKNOWN_OPERATION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::wire::{cloudwatch, ecs};
    use serde_json::json;

    #[test]
    fn replies_carry_each_protocols_headers() {
        let svc = &cloudwatch::SERVICE;
        let delete = cloudwatch::Operation::DeleteAlarms.schema();
        let r = output_reply(Protocol::RpcV2Cbor, svc, delete, &json!({}), "rid").unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0), "no output, no body");
        assert_eq!(r.header("content-type"), None);
        assert_eq!(r.header("Smithy-Protocol"), Some("rpc-v2-cbor"));
        assert_eq!(r.header("x-amzn-requestid"), Some("rid"));

        let list = cloudwatch::Operation::ListMetrics.schema();
        let r = output_reply(
            Protocol::RpcV2Cbor,
            svc,
            list,
            &json!({"Metrics": []}),
            "rid",
        )
        .unwrap();
        assert_eq!(r.header("content-type"), Some("application/cbor"));
        let r = output_reply(
            Protocol::AwsQuery,
            svc,
            list,
            &json!({"Metrics": []}),
            "rid",
        )
        .unwrap();
        assert_eq!(r.header("content-type"), Some("text/xml"));
        assert_eq!(r.header("smithy-protocol"), None);

        let e = cloudwatch::Exception::InvalidParameterValueException.schema();
        for p in [Protocol::AwsJson1_0, Protocol::RpcV2Cbor] {
            let r = error_reply(p, svc, e, "bad", "rid");
            assert_eq!(r.status, 400);
            assert_eq!(
                r.header("x-amzn-query-error"),
                Some("InvalidParameterValue;Sender"),
                "{p:?}"
            );
        }
        let r = error_reply(Protocol::AwsQuery, svc, e, "bad", "rid");
        assert_eq!(
            r.header("x-amzn-query-error"),
            None,
            "Query carries the code in the body"
        );

        let e = ecs::Exception::ServerException.schema();
        let r = error_reply(Protocol::AwsJson1_1, &ecs::SERVICE, e, "oops", "rid");
        assert_eq!(r.status, 500);
        assert_eq!(r.header("x-amzn-errortype"), Some("ServerException"));
        assert_eq!(
            r.header("x-amzn-query-error"),
            None,
            "ECS is not query-compatible"
        );
        assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"__type":"ServerException","message":"oops"}"#
        );

        assert_eq!(
            common::malformed_request(Protocol::AwsQuery).code,
            "ValidationError"
        );
        assert_eq!(
            common::unknown_operation(Protocol::RpcV2Cbor).code,
            "UnknownOperationException"
        );
    }
}
