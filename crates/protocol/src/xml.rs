//! AWS Query responses: XML written from the JSON value of a generated
//! output type, walking the service's shape table.
//!
//! ```xml
//! <CreateLoadBalancerResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
//!   <CreateLoadBalancerResult>
//!     <LoadBalancers>
//!       <member><LoadBalancerName>web</LoadBalancerName>…</member>
//!     </LoadBalancers>
//!   </CreateLoadBalancerResult>
//!   <ResponseMetadata><RequestId>…</RequestId></ResponseMetadata>
//! </CreateLoadBalancerResponse>
//! ```
//!
//! Members in the model's order under their XML names (`locationName`);
//! lists as `<member>` items (or repeated elements when flattened); maps as
//! `<entry><key/><value/></entry>`; timestamps ISO-8601 with milliseconds and
//! `Z`; booleans `true`/`false`; blobs base64; `null` members left out.
//! Errors: [`encode_error`]. No whitespace between elements (AWS sends some;
//! every parser ignores it).
//!
//! Text is escaped for XML 1.0: `&`, `<`, `>` as entities, carriage returns
//! as `&#xD;` (a parser would fold a raw one into a newline), and the
//! characters XML 1.0 cannot carry at all (C0 controls other than tab and
//! newline, U+FFFE, U+FFFF) as U+FFFD.

use flotilla_model::wire::schema::{
    ErrorSchema, OperationSchema, ServiceSchema, ShapeId, ShapeKind, TimestampFormat,
};
use serde_json::Value;

use crate::error::EncodeError;
use crate::query::{scalar_name, scalar_to_text};
use crate::scalar;

/// The content type of Query responses.
pub const CONTENT_TYPE: &str = "text/xml";

/// A successful response: `<{Op}Response>` with the output in the model's
/// result wrapper (`<{Op}Result>`), then `<ResponseMetadata>`. An operation
/// without output has only the metadata.
pub fn encode_output(
    service: &ServiceSchema,
    op: &OperationSchema,
    output: &Value,
    request_id: &str,
) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer {
        service,
        out: String::with_capacity(512),
    };
    w.out.push('<');
    w.out.push_str(op.name);
    w.out.push_str("Response");
    w.xmlns();
    w.out.push('>');
    if let Some(shape) = op.output {
        match op.result_wrapper {
            Some(wrapper) => w.element(wrapper, shape, output, wrapper)?,
            None => w.members(shape, output, op.name)?,
        }
    }
    w.out.push_str("<ResponseMetadata><RequestId>");
    escape_into(&mut w.out, request_id);
    w.out.push_str("</RequestId></ResponseMetadata></");
    w.out.push_str(op.name);
    w.out.push_str("Response>");
    Ok(w.out.into_bytes())
}

/// An error response:
/// `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`
/// with the Query error code (`DuplicateLoadBalancerName`).
pub fn encode_error(
    service: &ServiceSchema,
    error: &ErrorSchema,
    message: &str,
    request_id: &str,
) -> Vec<u8> {
    let mut w = Writer {
        service,
        out: String::with_capacity(256),
    };
    w.out.push_str("<ErrorResponse");
    w.xmlns();
    w.out.push_str("><Error><Type>");
    w.out.push_str(error.fault.as_str());
    w.out.push_str("</Type><Code>");
    escape_into(&mut w.out, error.code);
    w.out.push_str("</Code><Message>");
    escape_into(&mut w.out, message);
    w.out.push_str("</Message></Error><RequestId>");
    escape_into(&mut w.out, request_id);
    w.out.push_str("</RequestId></ErrorResponse>");
    w.out.into_bytes()
}

/// The XML of one value of `shape` inside `<name>…</name>`; for tests and
/// for callers that build their own envelope.
pub fn encode_element(
    service: &ServiceSchema,
    shape: ShapeId,
    value: &Value,
    name: &str,
) -> Result<String, EncodeError> {
    let mut w = Writer {
        service,
        out: String::new(),
    };
    w.element(name, shape, value, name)?;
    Ok(w.out)
}

struct Writer<'s> {
    service: &'s ServiceSchema,
    out: String,
}

impl Writer<'_> {
    fn xmlns(&mut self) {
        if let Some(ns) = self.service.xml_namespace {
            self.out.push_str(" xmlns=\"");
            escape_into(&mut self.out, ns);
            self.out.push('"');
        }
    }

    fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// `<name>value</name>`, where a flattened list or map instead repeats
    /// its items as `name` elements.
    fn element(
        &mut self,
        name: &str,
        shape: ShapeId,
        value: &Value,
        path: &str,
    ) -> Result<(), EncodeError> {
        let mismatch = |what: &str| EncodeError::new(path, format!("must be {what}"));
        match self.service.shape(shape).kind {
            ShapeKind::Structure(_) | ShapeKind::Union(_) => {
                self.open(name);
                self.members(shape, value, path)?;
                self.close(name);
            }
            ShapeKind::List(list) => {
                let items = value.as_array().ok_or_else(|| mismatch("an array"))?;
                if list.flattened {
                    for (i, item) in items.iter().enumerate() {
                        self.element(name, list.member, item, &format!("{path}[{i}]"))?;
                    }
                } else {
                    self.open(name);
                    for (i, item) in items.iter().enumerate() {
                        self.element(list.item_name(), list.member, item, &format!("{path}[{i}]"))?;
                    }
                    self.close(name);
                }
            }
            ShapeKind::Map(map) => {
                let entries = value.as_object().ok_or_else(|| mismatch("an object"))?;
                if !map.flattened {
                    self.open(name);
                }
                for (k, v) in entries.iter().filter(|(_, v)| !v.is_null()) {
                    self.open(if map.flattened { name } else { "entry" });
                    self.open(map.key_name);
                    escape_into(&mut self.out, k);
                    self.close(map.key_name);
                    self.element(map.value_name, map.value, v, &format!("{path}.{k}"))?;
                    self.close(if map.flattened { name } else { "entry" });
                }
                if !map.flattened {
                    self.close(name);
                }
            }
            ShapeKind::Document => {
                return Err(mismatch(
                    "absent: the Query protocol cannot carry documents",
                ))
            }
            ShapeKind::Timestamp(format) => {
                let secs = value
                    .as_f64()
                    .ok_or_else(|| mismatch("a number of seconds"))?;
                let text = match format {
                    Some(TimestampFormat::EpochSeconds) => Some(scalar::format_f64(secs)),
                    Some(TimestampFormat::Rfc822) => scalar::format_rfc822(secs),
                    Some(TimestampFormat::Iso8601) | None => scalar::format_iso8601(secs),
                }
                .ok_or_else(|| mismatch("a date in the years 0-9999"))?;
                self.open(name);
                self.out.push_str(&text);
                self.close(name);
            }
            kind => {
                let text =
                    scalar_to_text(kind, value).ok_or_else(|| mismatch(scalar_name(kind)))?;
                self.open(name);
                escape_into(&mut self.out, &text);
                self.close(name);
            }
        }
        Ok(())
    }

    /// A structure's members, in the model's order.
    fn members(&mut self, shape: ShapeId, value: &Value, path: &str) -> Result<(), EncodeError> {
        let Some(members) = self.service.shape(shape).kind.members() else {
            return Err(EncodeError::new(path, "is not a structure in the model"));
        };
        let obj = value
            .as_object()
            .ok_or_else(|| EncodeError::new(path, "must be an object"))?;
        for m in members {
            let Some(v) = obj.get(m.name).filter(|v| !v.is_null()) else {
                continue;
            };
            let name = match self.service.shape(m.target).kind {
                // A flattened list whose member is named repeats that name.
                ShapeKind::List(l) if l.flattened => l.member_name.unwrap_or(m.xml_name),
                _ => m.xml_name,
            };
            self.element(name, m.target, v, &format!("{path}.{}", m.name))?;
        }
        Ok(())
    }
}

/// Appends `text` escaped for an XML text node or a double-quoted attribute.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#xD;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::wire::schema::{ErrorSchema, Fault};
    use flotilla_model::wire::{elbv2, sts};
    use serde_json::json;

    #[test]
    fn get_caller_identity_reads_as_sts_sends_it() {
        let op = sts::Operation::GetCallerIdentity.schema();
        let out = json!({"UserId": "AIDA", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/ci"});
        let xml =
            String::from_utf8(encode_output(&sts::SERVICE, op, &out, "rid-1").unwrap()).unwrap();
        assert_eq!(
            xml,
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
             <UserId>AIDA</UserId><Account>123456789012</Account><Arn>arn:aws:iam::123456789012:user/ci</Arn>\
             </GetCallerIdentityResult><ResponseMetadata><RequestId>rid-1</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>"
        );
    }

    #[test]
    fn lists_timestamps_and_escapes() {
        let op = elbv2::Operation::DescribeLoadBalancers.schema();
        let out = json!({"LoadBalancers": [{
            "LoadBalancerName": "a<b>&\"c\"\r\n\u{1}",
            "CreatedTime": 1767225600.5,
            "AvailabilityZones": [],
            "SecurityGroups": ["sg-1", "sg-2"],
            "Type": "application",
        }]});
        let xml =
            String::from_utf8(encode_output(&elbv2::SERVICE, op, &out, "r").unwrap()).unwrap();
        assert!(xml.contains(
            "<DescribeLoadBalancersResult><LoadBalancers><member><CreatedTime>2026-01-01T00:00:00.500Z</CreatedTime>\
             <LoadBalancerName>a&lt;b&gt;&amp;&quot;c&quot;&#xD;\n\u{FFFD}</LoadBalancerName>"
        ));
        assert!(xml.contains("<Type>application</Type><AvailabilityZones></AvailabilityZones><SecurityGroups><member>sg-1</member><member>sg-2</member></SecurityGroups>"), "{xml}");
        let bad = json!({"LoadBalancers": [{"CreatedTime": "yesterday"}]});
        let err = encode_output(&elbv2::SERVICE, op, &bad, "r").unwrap_err();
        assert_eq!(err.to_string(), "cannot encode DescribeLoadBalancersResult.LoadBalancers[0].CreatedTime: must be a number of seconds");
    }

    #[test]
    fn errors_carry_the_query_code() {
        let e = elbv2::Exception::DuplicateLoadBalancerNameException.schema();
        let xml = String::from_utf8(encode_error(
            &elbv2::SERVICE,
            e,
            "A load balancer with the same name 'web' exists",
            "r",
        ))
        .unwrap();
        assert_eq!(
            xml,
            "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error><Type>Sender</Type>\
             <Code>DuplicateLoadBalancerName</Code><Message>A load balancer with the same name 'web' exists</Message>\
             </Error><RequestId>r</RequestId></ErrorResponse>"
        );
        const THROTTLED: ErrorSchema = ErrorSchema::common("ServiceUnavailable", 503);
        assert_eq!(THROTTLED.fault, Fault::Receiver);
        let xml =
            String::from_utf8(encode_error(&sts::SERVICE, &THROTTLED, "<busy>", "r")).unwrap();
        assert!(xml.contains(
            "<Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>&lt;busy&gt;</Message>"
        ));
    }

    #[test]
    fn an_operation_without_output_has_only_metadata() {
        let op = elbv2::Operation::DeleteLoadBalancer.schema();
        let xml = String::from_utf8(encode_output(&elbv2::SERVICE, op, &json!({}), "r").unwrap())
            .unwrap();
        assert_eq!(
            xml,
            "<DeleteLoadBalancerResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
             <DeleteLoadBalancerResult></DeleteLoadBalancerResult><ResponseMetadata><RequestId>r</RequestId>\
             </ResponseMetadata></DeleteLoadBalancerResponse>"
        );
    }
}
