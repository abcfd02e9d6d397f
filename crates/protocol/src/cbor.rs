//! Smithy RPC v2 CBOR: request bodies read into the JSON value a generated
//! type deserializes from, and response values written back, walking the
//! service's shape table (the spec:
//! <https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html>).
//!
//! - A structure is a CBOR map keyed by member name (not `locationName`);
//!   `null` (and `undefined`) members are absent; unknown members are
//!   skipped.
//! - Timestamps are tag 1 over epoch seconds, an integer or a float (read
//!   untagged too); written as tag 1 over a double.
//! - Blobs are byte strings (base64 text on the JSON side).
//! - Definite and indefinite lengths are read; definite lengths are written.
//! - Floats are read from half, single or double precision and written as
//!   doubles (single for a `float` member when exact); NaN and infinities
//!   are refused on the way in, since JSON cannot carry them.
//!
//! Every read is bounded: nesting by [`MAX_DEPTH`], every length by the bytes
//! left in the body, so no input can make the decoder allocate more than the
//! body's size or recurse without limit.
//!
//! What the front must do around these functions (from the spec):
//! - Route `POST {prefix}/service/{Service}/operation/{Operation}` by the
//!   last four segments ([`RpcPath::parse`]); accept the service's name or
//!   its absolute shape id with `#` as `.`.
//! - Refuse requests carrying `X-Amz-Target` or `X-Amzn-Target`.
//! - Answer with `Smithy-Protocol: rpc-v2-cbor` on every response, success or
//!   error, and `Content-Type: application/cbor` when there is a body (an
//!   operation without output has none). Status 200 on success; errors take
//!   the error's status (400 for client errors, 500 for server errors).
//!   [`crate::Reply`] carries all of this.

use ciborium_ll::{Decoder, Encoder, Header};
use flotilla_model::wire::schema::{
    ErrorSchema, OperationSchema, ServiceSchema, ShapeId, ShapeKind,
};
use serde_json::{Map, Value};

use crate::error::{DecodeError, EncodeError};
use crate::scalar;

pub const CONTENT_TYPE: &str = "application/cbor";
/// The header every RPC v2 CBOR request and response carries, and its value.
pub const PROTOCOL_HEADER: &str = "smithy-protocol";
pub const PROTOCOL: &str = "rpc-v2-cbor";

/// The deepest nesting of maps, arrays and tags a request may have.
pub const MAX_DEPTH: usize = 64;

/// The route of an RPC v2 request: `…/service/{service}/operation/{operation}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcPath<'a> {
    pub service: &'a str,
    pub operation: &'a str,
}

impl<'a> RpcPath<'a> {
    /// The last four segments of the path, as the spec routes; `None` if the
    /// path has no such form.
    pub fn parse(path: &'a str) -> Option<RpcPath<'a>> {
        let mut parts = path.trim_end_matches('/').rsplit('/');
        let operation = parts.next()?;
        (parts.next()? == "operation").then_some(())?;
        let service = parts.next()?;
        (parts.next()? == "service").then_some(())?;
        if operation.is_empty() || service.is_empty() {
            return None;
        }
        Some(RpcPath { service, operation })
    }

    /// Whether the path names `service`: by its shape name
    /// (`GraniteServiceVersion20100801`) or its absolute shape id with `.`
    /// for `#` (`com.amazonaws.cloudwatch.GraniteServiceVersion20100801`).
    pub fn names(&self, service: &ServiceSchema) -> bool {
        self.service == service.smithy_service_name()
            || self
                .service
                .strip_prefix(service.smithy_namespace())
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(service.smithy_service_name())
    }
}

/// The operation's input from a request body. An empty body is an empty
/// input (the spec sends no body for operations without input).
pub fn decode_input(
    service: &ServiceSchema,
    op: &OperationSchema,
    body: &[u8],
) -> Result<Value, DecodeError> {
    match op.input {
        Some(shape) => decode(service, shape, body),
        None if body.is_empty() => Ok(Value::Object(Map::new())),
        None => Err(DecodeError::body(format!(
            "{} takes no input, but the request has a body.",
            op.name
        ))),
    }
}

/// A value of `shape` from one CBOR item filling `body`.
pub fn decode(service: &ServiceSchema, shape: ShapeId, body: &[u8]) -> Result<Value, DecodeError> {
    if body.is_empty() {
        if service.shape(shape).kind.members().is_some() {
            return Ok(Value::Object(Map::new()));
        }
        return Err(DecodeError::body("The request body is empty."));
    }
    let mut r = Reader {
        service,
        dec: Decoder::from(body),
        len: body.len(),
    };
    let header = r.pull("")?;
    let value = r
        .value(header, shape, "", 0)?
        .unwrap_or_else(|| Value::Object(Map::new()));
    if r.left() != 0 {
        return Err(DecodeError::body(format!(
            "The request body has {} bytes after its CBOR item.",
            r.left()
        )));
    }
    Ok(value)
}

struct Reader<'s, 'b> {
    service: &'s ServiceSchema,
    dec: Decoder<&'b [u8]>,
    len: usize,
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "The request body"
    } else {
        path
    }
}

fn malformed(path: &str) -> DecodeError {
    DecodeError::new(at(path), "is not well-formed CBOR.")
}

impl Reader<'_, '_> {
    fn left(&mut self) -> usize {
        self.len.saturating_sub(self.dec.offset())
    }

    fn pull(&mut self, path: &str) -> Result<Header, DecodeError> {
        self.dec.pull().map_err(|_| malformed(path))
    }

    /// `n` raw bytes, refused before allocating if the body is shorter.
    fn raw(&mut self, n: usize, path: &str) -> Result<Vec<u8>, DecodeError> {
        if n > self.left() {
            return Err(DecodeError::new(
                at(path),
                "is cut short: the body ends inside it.",
            ));
        }
        let mut buf = vec![0; n];
        ciborium_io::Read::read_exact(&mut self.dec, &mut buf).map_err(|_| malformed(path))?;
        Ok(buf)
    }

    /// The bytes of a byte or text string whose header was `len`; chunked
    /// (indefinite) strings are joined.
    fn string_bytes(
        &mut self,
        len: Option<usize>,
        text: bool,
        path: &str,
    ) -> Result<Vec<u8>, DecodeError> {
        if let Some(n) = len {
            return self.raw(n, path);
        }
        let mut out = Vec::new();
        loop {
            match self.pull(path)? {
                Header::Break => return Ok(out),
                Header::Text(Some(n)) if text => out.extend(self.raw(n, path)?),
                Header::Bytes(Some(n)) if !text => out.extend(self.raw(n, path)?),
                _ => {
                    return Err(DecodeError::new(
                        at(path),
                        "has a chunk of another type inside an indefinite-length string.",
                    ))
                }
            }
        }
    }

    fn text(&mut self, len: Option<usize>, path: &str) -> Result<String, DecodeError> {
        String::from_utf8(self.string_bytes(len, true, path)?)
            .map_err(|_| DecodeError::new(at(path), "is not valid UTF-8."))
    }

    /// The entries of a map or the items of an array: `Some(n)` for a
    /// definite length (refused if the body cannot hold that many), `None`
    /// for an indefinite one (ended by a break).
    fn count(
        &mut self,
        len: Option<usize>,
        per_item: usize,
        path: &str,
    ) -> Result<Option<usize>, DecodeError> {
        match len {
            Some(n) if n.saturating_mul(per_item) > self.left() => Err(DecodeError::new(
                at(path),
                "claims more items than the body holds.",
            )),
            other => Ok(other),
        }
    }

    /// The next item's header inside a container, or `None` at its end.
    fn next(
        &mut self,
        remaining: &mut Option<usize>,
        path: &str,
    ) -> Result<Option<Header>, DecodeError> {
        match remaining {
            Some(0) => Ok(None),
            Some(n) => {
                *n -= 1;
                self.pull(path).map(Some)
            }
            None => match self.pull(path)? {
                Header::Break => Ok(None),
                h => Ok(Some(h)),
            },
        }
    }

    /// The value of `shape` whose first header is `header`; `None` for null
    /// or undefined.
    fn value(
        &mut self,
        header: Header,
        shape: ShapeId,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::new(
                at(path),
                format!("is nested more than {MAX_DEPTH} levels deep."),
            ));
        }
        let kind = self.service.shape(shape).kind;
        let mut header = header;
        // Tag 55799 only says "this is CBOR".
        while header == Header::Tag(55799) {
            header = self.pull(path)?;
        }
        if let Header::Simple(22 | 23) = header {
            return Ok(None);
        }
        let wrong = |what: &str| DecodeError::new(at(path), format!("must be {what}."));
        let value = match kind {
            ShapeKind::Structure(members) | ShapeKind::Union(members) => {
                let Header::Map(len) = header else {
                    return Err(wrong("a map"));
                };
                let mut remaining = self.count(len, 2, path)?;
                let mut out = Map::new();
                while let Some(h) = self.next(&mut remaining, path)? {
                    let key = match h {
                        Header::Text(len) => self.text(len, path)?,
                        _ => {
                            return Err(DecodeError::new(
                                at(path),
                                "has a key that is not a text string.",
                            ))
                        }
                    };
                    let vh = self.pull(path)?;
                    match members.iter().find(|m| m.name == key) {
                        Some(m) => {
                            let child = if path.is_empty() {
                                key.clone()
                            } else {
                                format!("{path}.{key}")
                            };
                            if let Some(v) = self.value(vh, m.target, &child, depth + 1)? {
                                out.insert(key, v);
                            }
                        }
                        None => self.skip(vh, path, depth + 1)?,
                    }
                }
                Value::Object(out)
            }
            ShapeKind::List(list) => {
                let Header::Array(len) = header else {
                    return Err(wrong("an array"));
                };
                let mut remaining = self.count(len, 1, path)?;
                let mut out = Vec::with_capacity(remaining.unwrap_or(0));
                while let Some(h) = self.next(&mut remaining, path)? {
                    let child = format!("{}[{}]", path, out.len());
                    match self.value(h, list.member, &child, depth + 1)? {
                        Some(v) => out.push(v),
                        None => {
                            return Err(DecodeError::new(
                                child,
                                "is null, which this list does not allow.",
                            ))
                        }
                    }
                }
                Value::Array(out)
            }
            ShapeKind::Map(map) => {
                let Header::Map(len) = header else {
                    return Err(wrong("a map"));
                };
                let mut remaining = self.count(len, 2, path)?;
                let mut out = Map::new();
                while let Some(h) = self.next(&mut remaining, path)? {
                    let key = match h {
                        Header::Text(len) => self.text(len, path)?,
                        _ => {
                            return Err(DecodeError::new(
                                at(path),
                                "has a key that is not a text string.",
                            ))
                        }
                    };
                    let child = format!("{path}.{key}");
                    let vh = self.pull(&child)?;
                    if let Some(v) = self.value(vh, map.value, &child, depth + 1)? {
                        out.insert(key, v);
                    }
                }
                Value::Object(out)
            }
            ShapeKind::String | ShapeKind::Enum(_) => {
                let Header::Text(len) = header else {
                    return Err(wrong("a text string"));
                };
                let s = self.text(len, path)?;
                if let ShapeKind::Enum(values) = kind {
                    if !values.contains(&s.as_str()) {
                        return Err(DecodeError::new(
                            at(path),
                            format!("must be one of {}, not '{s}'.", values.join(", ")),
                        ));
                    }
                }
                Value::String(s)
            }
            ShapeKind::Integer | ShapeKind::Long => {
                let long = matches!(kind, ShapeKind::Long);
                let what = if long {
                    "a whole number within 64 bits"
                } else {
                    "a whole number within 32 bits"
                };
                let v = match header {
                    Header::Positive(n) => i64::try_from(n).ok(),
                    Header::Negative(n) => i64::try_from(n).ok().map(|n| -1 - n),
                    Header::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
                    _ => None,
                };
                match v {
                    Some(v) if scalar::in_range(v, long) => Value::from(v),
                    _ => return Err(wrong(what)),
                }
            }
            ShapeKind::Float | ShapeKind::Double => self
                .number(header)
                .ok_or_else(|| wrong("a finite number"))?,
            ShapeKind::Boolean => match header {
                Header::Simple(20) => Value::Bool(false),
                Header::Simple(21) => Value::Bool(true),
                _ => return Err(wrong("true or false")),
            },
            ShapeKind::Timestamp(_) => {
                let inner = match header {
                    Header::Tag(1) => self.pull(path)?,
                    Header::Tag(t) => {
                        return Err(DecodeError::new(
                            at(path),
                            format!("has tag {t}; timestamps take tag 1."),
                        ))
                    }
                    h => h,
                };
                self.number(inner)
                    .ok_or_else(|| wrong("a timestamp (tag 1 over seconds since the epoch)"))?
            }
            ShapeKind::Blob => {
                let Header::Bytes(len) = header else {
                    return Err(wrong("a byte string"));
                };
                Value::String(scalar::base64_encode(&self.string_bytes(len, false, path)?))
            }
            ShapeKind::Document => {
                return Err(DecodeError::new(
                    at(path),
                    "is a document, which RPC v2 CBOR does not support.",
                ))
            }
        };
        Ok(Some(value))
    }

    /// A finite number from an integer or float header.
    fn number(&self, header: Header) -> Option<Value> {
        match header {
            Header::Positive(n) => Some(Value::from(n)),
            Header::Negative(n) => i64::try_from(n).ok().map(|n| Value::from(-1 - n)),
            Header::Float(f) => scalar::float_value(f),
            _ => None,
        }
    }

    /// Skips an item the shape does not know, whatever it holds.
    fn skip(&mut self, header: Header, path: &str, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::new(
                at(path),
                format!("is nested more than {MAX_DEPTH} levels deep."),
            ));
        }
        match header {
            Header::Positive(_) | Header::Negative(_) | Header::Float(_) | Header::Simple(_) => {
                Ok(())
            }
            Header::Break => Err(DecodeError::new(
                at(path),
                "has a break outside an indefinite-length item.",
            )),
            Header::Tag(_) => {
                let h = self.pull(path)?;
                self.skip(h, path, depth + 1)
            }
            Header::Bytes(len) => self.string_bytes(len, false, path).map(drop),
            Header::Text(len) => self.string_bytes(len, true, path).map(drop),
            Header::Array(len) | Header::Map(len) => {
                let per = if matches!(header, Header::Map(_)) {
                    2
                } else {
                    1
                };
                let mut remaining = self.count(len.map(|n| n.saturating_mul(per)), 1, path)?;
                while let Some(h) = self.next(&mut remaining, path)? {
                    self.skip(h, path, depth + 1)?;
                }
                Ok(())
            }
        }
    }
}

/// The operation's output as a response body; `None` for an operation
/// without output (the spec sends no body then).
pub fn encode_output(
    service: &ServiceSchema,
    op: &OperationSchema,
    output: &Value,
) -> Result<Option<Vec<u8>>, EncodeError> {
    op.output
        .map(|shape| encode(service, shape, output))
        .transpose()
}

/// One CBOR item for a value of `shape`.
pub fn encode(
    service: &ServiceSchema,
    shape: ShapeId,
    value: &Value,
) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer {
        service,
        out: Vec::with_capacity(256),
    };
    w.value(shape, value, "")?;
    Ok(w.out)
}

/// An error body: `{"__type": "<namespace>#<Shape>", "message": …}`, the
/// absolute shape id the spec requires. (Clients read what follows the `#`.)
pub fn encode_error(service: &ServiceSchema, error: &ErrorSchema, message: &str) -> Vec<u8> {
    let mut w = Writer {
        service,
        out: Vec::with_capacity(128),
    };
    let type_id = format!("{}#{}", service.smithy_namespace(), error.shape);
    w.header(Header::Map(Some(2)));
    w.text("__type");
    w.text(&type_id);
    w.text("message");
    w.text(message);
    w.out
}

struct Writer<'s> {
    service: &'s ServiceSchema,
    out: Vec<u8>,
}

// Writing to a Vec cannot fail, so the encoder's results are ignored.
impl Writer<'_> {
    fn header(&mut self, h: Header) {
        let _ = Encoder::from(&mut self.out).push(h);
    }

    fn text(&mut self, s: &str) {
        let _ = Encoder::from(&mut self.out).text(s, None);
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A float as a double (or a single when `single` and exact): never a
    /// half, which the spec advises against.
    fn float(&mut self, v: f64, single: bool) {
        if single && f64::from(v as f32).to_bits() == v.to_bits() {
            self.raw(&[0xfa]);
            self.raw(&(v as f32).to_be_bytes());
        } else {
            self.raw(&[0xfb]);
            self.raw(&v.to_be_bytes());
        }
    }

    fn int(&mut self, v: i64) {
        if v >= 0 {
            self.header(Header::Positive(v as u64));
        } else {
            self.header(Header::Negative((-1 - v) as u64));
        }
    }

    fn value(&mut self, shape: ShapeId, value: &Value, path: &str) -> Result<(), EncodeError> {
        let field = if path.is_empty() { "the output" } else { path };
        let mismatch = |what: &str| EncodeError::new(field, format!("must be {what}"));
        match self.service.shape(shape).kind {
            ShapeKind::Structure(members) | ShapeKind::Union(members) => {
                let obj = value.as_object().ok_or_else(|| mismatch("an object"))?;
                let present: Vec<_> = members
                    .iter()
                    .filter_map(|m| obj.get(m.name).filter(|v| !v.is_null()).map(|v| (m, v)))
                    .collect();
                self.header(Header::Map(Some(present.len())));
                for (m, v) in present {
                    self.text(m.name);
                    let child = if path.is_empty() {
                        m.name.to_string()
                    } else {
                        format!("{path}.{}", m.name)
                    };
                    self.value(m.target, v, &child)?;
                }
            }
            ShapeKind::List(list) => {
                let items = value.as_array().ok_or_else(|| mismatch("an array"))?;
                self.header(Header::Array(Some(items.len())));
                for (i, item) in items.iter().enumerate() {
                    self.value(list.member, item, &format!("{path}[{i}]"))?;
                }
            }
            ShapeKind::Map(map) => {
                let entries = value.as_object().ok_or_else(|| mismatch("an object"))?;
                let present: Vec<_> = entries.iter().filter(|(_, v)| !v.is_null()).collect();
                self.header(Header::Map(Some(present.len())));
                for (k, v) in present {
                    self.text(k);
                    self.value(map.value, v, &format!("{path}.{k}"))?;
                }
            }
            ShapeKind::String | ShapeKind::Enum(_) => {
                self.text(value.as_str().ok_or_else(|| mismatch("a string"))?)
            }
            ShapeKind::Integer | ShapeKind::Long => {
                let n = value
                    .as_number()
                    .and_then(scalar::as_whole)
                    .ok_or_else(|| mismatch("a whole number"))?;
                self.int(n);
            }
            kind @ (ShapeKind::Float | ShapeKind::Double) => {
                let f = value.as_f64().ok_or_else(|| mismatch("a number"))?;
                self.float(f, matches!(kind, ShapeKind::Float));
            }
            ShapeKind::Boolean => {
                let b = value.as_bool().ok_or_else(|| mismatch("a boolean"))?;
                self.header(Header::Simple(if b { 21 } else { 20 }));
            }
            ShapeKind::Timestamp(_) => {
                let secs = value
                    .as_f64()
                    .ok_or_else(|| mismatch("a number of seconds"))?;
                self.header(Header::Tag(1));
                self.float(secs, false);
            }
            ShapeKind::Blob => {
                let bytes = value
                    .as_str()
                    .and_then(scalar::base64_decode)
                    .ok_or_else(|| mismatch("base64 text"))?;
                let _ = Encoder::from(&mut self.out).bytes(&bytes, None);
            }
            ShapeKind::Document => {
                return Err(mismatch("absent: RPC v2 CBOR does not support documents"))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::wire::cloudwatch;
    use serde_json::json;

    fn put_metric_data() -> &'static OperationSchema {
        cloudwatch::Operation::PutMetricData.schema()
    }

    fn decode_pmd(bytes: &[u8]) -> Result<Value, DecodeError> {
        decode_input(&cloudwatch::SERVICE, put_metric_data(), bytes)
    }

    #[test]
    fn paths_route_by_their_last_four_segments() {
        let p =
            RpcPath::parse("/service/GraniteServiceVersion20100801/operation/ListMetrics").unwrap();
        assert_eq!(
            p,
            RpcPath {
                service: "GraniteServiceVersion20100801",
                operation: "ListMetrics"
            }
        );
        assert!(p.names(&cloudwatch::SERVICE));
        let p = RpcPath::parse(
            "/v1/service/com.amazonaws.cloudwatch.GraniteServiceVersion20100801/operation/X",
        )
        .unwrap();
        assert!(p.names(&cloudwatch::SERVICE));
        assert!(!RpcPath::parse("/service/Logs_20140328/operation/X")
            .unwrap()
            .names(&cloudwatch::SERVICE));
        assert_eq!(RpcPath::parse("/service/x/op/y"), None);
        assert_eq!(RpcPath::parse("/"), None);
        assert_eq!(RpcPath::parse("/service//operation/X"), None);
    }

    #[test]
    fn indefinite_lengths_tags_and_nulls_read_as_definite_ones() {
        // {_ "Namespace": (_ "Ap", "p"), "MetricData": [_ {"MetricName": "m",
        //   "Timestamp": 1(1767225600), "Value": 1.5f16, "Unit": null,
        //   "Extra": [_ 1, {_ }]}], "StrictEntityValidation": true}
        let mut b = vec![0xbf];
        b.extend([0x69]);
        b.extend(b"Namespace");
        b.extend([0x7f, 0x62]);
        b.extend(b"Ap");
        b.extend([0x61]);
        b.extend(b"p");
        b.push(0xff);
        b.push(0x6a);
        b.extend(b"MetricData");
        b.push(0x9f);
        b.push(0xa5);
        b.push(0x6a);
        b.extend(b"MetricName");
        b.extend([0x61, b'm']);
        b.push(0x69);
        b.extend(b"Timestamp");
        b.extend([0xc1, 0x1a]);
        b.extend(1_767_225_600u32.to_be_bytes());
        b.push(0x65);
        b.extend(b"Value");
        b.extend([0xf9, 0x3e, 0x00]);
        b.push(0x64);
        b.extend(b"Unit");
        b.push(0xf6);
        b.push(0x65);
        b.extend(b"Extra");
        b.extend([0x9f, 0x01, 0xbf, 0xff, 0xff]);
        b.push(0xff);
        b.push(0x76);
        b.extend(b"StrictEntityValidation");
        b.push(0xf5);
        b.push(0xff);
        let v = decode_pmd(&b).unwrap();
        assert_eq!(
            v,
            json!({"Namespace": "App", "MetricData": [{"MetricName": "m", "Timestamp": 1767225600, "Value": 1.5}], "StrictEntityValidation": true})
        );
        // The self-described CBOR tag in front changes nothing.
        let mut tagged = vec![0xd9, 0xd9, 0xf7];
        tagged.extend(&b);
        assert_eq!(decode_pmd(&tagged).unwrap(), v);
    }

    #[test]
    fn encoding_reads_back() {
        let op = cloudwatch::Operation::GetMetricData.schema();
        let out = json!({
            "MetricDataResults": [{"Id": "q1", "Label": "cpu", "Timestamps": [1767225600.0, 1767225660.5],
                                   "Values": [1.0, 0.1, -3.25e300], "StatusCode": "Complete"}],
            "NextToken": "t",
        });
        let bytes = encode_output(&cloudwatch::SERVICE, op, &out)
            .unwrap()
            .unwrap();
        assert_eq!(
            decode(&cloudwatch::SERVICE, op.output.unwrap(), &bytes).unwrap(),
            out
        );
        // Timestamps are tag 1 over a double.
        let ts = bytes.windows(2).position(|w| w == [0xc1, 0xfb]);
        assert!(ts.is_some(), "{bytes:02x?}");
        assert_eq!(
            encode_output(
                &cloudwatch::SERVICE,
                cloudwatch::Operation::DeleteAlarms.schema(),
                &json!({})
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn errors_carry_the_absolute_shape_id() {
        let e = cloudwatch::Exception::ResourceNotFound.schema();
        let body = encode_error(&cloudwatch::SERVICE, e, "no such alarm");
        let mut want = vec![0xa2, 0x66];
        want.extend(b"__type");
        let id = b"com.amazonaws.cloudwatch#ResourceNotFound";
        want.extend([0x78, id.len() as u8]);
        want.extend(id);
        want.push(0x67);
        want.extend(b"message");
        want.push(0x6d);
        want.extend(b"no such alarm");
        assert_eq!(body, want);
    }

    #[test]
    fn bad_input_names_the_member_and_the_rule() {
        let err = |b: &[u8]| decode_pmd(b).unwrap_err().to_string();
        assert_eq!(err(&[0x01]), "The request body must be a map.");
        assert_eq!(
            err(&[0xa1, 0x01, 0x01]),
            "The request body has a key that is not a text string."
        );
        // {"Namespace": 5}
        let mut b = vec![0xa1, 0x69];
        b.extend(b"Namespace");
        b.push(0x05);
        assert_eq!(err(&b), "Namespace must be a text string.");
        // {"MetricData": [{"Value": NaN}]}
        let mut b = vec![0xa1, 0x6a];
        b.extend(b"MetricData");
        b.extend([0x81, 0xa1, 0x65]);
        b.extend(b"Value");
        b.extend([0xf9, 0x7e, 0x00]);
        assert_eq!(err(&b), "MetricData[0].Value must be a finite number.");
        // A map claiming 2^32 entries in a few bytes.
        assert_eq!(
            err(&[0xba, 0xff, 0xff, 0xff, 0xff]),
            "The request body claims more items than the body holds."
        );
        // A text string claiming more bytes than the body has.
        assert_eq!(
            err(&[0xa1, 0x7a, 0x7f, 0xff, 0xff, 0xff]),
            "The request body is cut short: the body ends inside it."
        );
        assert_eq!(
            err(&[0xa0, 0x00]),
            "The request body has 1 bytes after its CBOR item."
        );
        assert_eq!(err(&[0xbf]), "The request body is not well-formed CBOR.");
        assert_eq!(
            err(&[0xa1, 0x61, 0xff, 0x00]),
            "The request body is not valid UTF-8."
        );
        // An unknown member nested far deeper than any shape.
        let mut deep = vec![0xa1, 0x61, b'x'];
        deep.extend(std::iter::repeat_n(0x81, 100_000));
        deep.push(0x00);
        assert!(err(&deep).contains("nested more than 64 levels deep"));
        assert!(decode_pmd(&[]).unwrap().as_object().unwrap().is_empty());
    }
}
