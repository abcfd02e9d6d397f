//! AWS Query requests: `application/x-www-form-urlencoded` bodies (or the
//! query string of a GET) read into the JSON value a generated request type
//! deserializes from.
//!
//! The keys spell a path through the input shape, by each member's Query
//! name (its `locationName`, else its name):
//!
//! ```text
//! Action=CreateLoadBalancer&Version=2015-12-01
//! &Name=web                                   structure member
//! &Subnets.member.1=subnet-a                  list item (1-based)
//! &Tags.member.1.Key=team&Tags.member.1.Value=core
//! &Attributes.entry.1.key=k&Attributes.entry.1.value=v    map entry
//! &Subnets=                                   an empty list
//! ```
//!
//! Flattened lists and maps drop the `member`/`entry` level (`Name.1`).
//! Scalars: numbers in decimal, booleans `true`/`false`, timestamps ISO-8601
//! (or epoch seconds), blobs base64. Parameters the input shape does not
//! have are ignored, as AWS ignores them; a known parameter with a value that
//! does not fit is a [`DecodeError`] naming the parameter.
//!
//! Start with [`Form::parse`] and [`decode_input`]. [`encode_input`] is the
//! other direction (what botocore's Query serializer does), for clients and
//! tests.

use std::borrow::Cow;
use std::collections::BTreeMap;

use flotilla_model::wire::schema::{
    OperationSchema, ServiceSchema, ShapeId, ShapeKind, TimestampFormat,
};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use crate::error::{DecodeError, EncodeError};
use crate::scalar;

/// Keys with more dot-separated parts than this are refused: no AWS shape
/// nests that deep, and it bounds the decoder's recursion.
pub const MAX_KEY_PARTS: usize = 64;

/// The parameters of a Query request, decoded from their URL encoding, in
/// the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Reads `a=1&b=x+y&c=%2F`: `+` is a space, `%XX` a byte, the result
    /// must be UTF-8. A key given twice is refused (which one AWS would take
    /// is not something a client should depend on).
    pub fn parse(encoded: &[u8]) -> Result<Form, DecodeError> {
        let text = std::str::from_utf8(encoded)
            .map_err(|_| DecodeError::body("The request body is not valid UTF-8."))?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = unescape(k).map_err(|_| {
                DecodeError::body(format!("The parameter name '{k}' is not valid UTF-8."))
            })?;
            let value =
                unescape(v).map_err(|_| DecodeError::new(key.clone(), "is not valid UTF-8."))?;
            pairs.push((key, value));
        }
        let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(DecodeError::new(w[0], "is given more than once."));
        }
        Ok(Form { pairs })
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Form {
        Form { pairs }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The operation's name.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// The API version the client speaks (the model's `apiVersion`).
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// The parameters as `application/x-www-form-urlencoded` text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.pairs {
            if !out.is_empty() {
                out.push('&');
            }
            out.extend(utf8_percent_encode(k, FORM));
            out.push('=');
            out.extend(utf8_percent_encode(v, FORM));
        }
        out
    }
}

/// Everything but the unreserved characters of RFC 3986 is escaped, as the
/// AWS SDKs write forms.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn unescape(s: &str) -> Result<String, std::str::Utf8Error> {
    let s: Cow<str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    percent_decode_str(&s).decode_utf8().map(Cow::into_owned)
}

/// The operation's input, from a Query request. An operation without input
/// takes `{}`.
pub fn decode_input(
    service: &ServiceSchema,
    op: &OperationSchema,
    form: &Form,
) -> Result<Value, DecodeError> {
    match op.input {
        Some(shape) => decode(service, shape, form),
        None => Ok(Value::Object(Map::new())),
    }
}

/// A structure shape from a Query request's parameters (`Action` and
/// `Version` are the protocol's, not the input's).
pub fn decode(service: &ServiceSchema, shape: ShapeId, form: &Form) -> Result<Value, DecodeError> {
    let mut root = Node::default();
    for (key, value) in &form.pairs {
        if key == "Action" || key == "Version" {
            continue;
        }
        let mut node = &mut root;
        let mut parts = 0;
        for part in key.split('.') {
            parts += 1;
            if parts > MAX_KEY_PARTS {
                return Err(DecodeError::new(
                    key.as_str(),
                    format!("has more than {MAX_KEY_PARTS} parts."),
                ));
            }
            node = node.children.entry(part).or_default();
        }
        // Form::parse refuses duplicates; a Form built from pairs may not have.
        if node.value.replace(value).is_some() {
            return Err(DecodeError::new(key.as_str(), "is given more than once."));
        }
    }
    let decoder = Decoder { service };
    Ok(decoder
        .value(shape, &root, "")?
        .unwrap_or_else(|| Value::Object(Map::new())))
}

/// The parameters under one key prefix.
#[derive(Default, Debug)]
struct Node<'a> {
    value: Option<&'a str>,
    children: BTreeMap<&'a str, Node<'a>>,
}

impl Node<'_> {
    fn is_empty_leaf(&self) -> bool {
        self.children.is_empty() && self.value.is_none_or(str::is_empty)
    }
}

struct Decoder<'s> {
    service: &'s ServiceSchema,
}

fn join(prefix: &str, part: &str) -> String {
    if prefix.is_empty() {
        part.to_string()
    } else {
        format!("{prefix}.{part}")
    }
}

impl Decoder<'_> {
    /// The value of `shape` from the parameters under `key`; `None` when
    /// nothing was given for it.
    fn value(
        &self,
        shape: ShapeId,
        node: &Node<'_>,
        key: &str,
    ) -> Result<Option<Value>, DecodeError> {
        let kind = self.service.shape(shape).kind;
        match kind {
            ShapeKind::Structure(members) | ShapeKind::Union(members) => {
                if node.value.is_some_and(|v| !v.is_empty()) && node.children.is_empty() {
                    return Err(DecodeError::new(
                        key,
                        "is a structure: give its members as parameters of their own.",
                    ));
                }
                let mut out = Map::new();
                for m in members {
                    let name = query_name(self.service, m.target, m.xml_name);
                    if let Some(child) = node.children.get(name) {
                        if let Some(v) = self.value(m.target, child, &join(key, name))? {
                            out.insert(m.name.to_string(), v);
                        }
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            ShapeKind::List(list) => {
                let (items, items_key) = if list.flattened {
                    (Some(node), key.to_string())
                } else {
                    (
                        node.children.get(list.item_name()),
                        join(key, list.item_name()),
                    )
                };
                let Some(items) = items else {
                    // `Name=` with nothing under it is how an empty list travels.
                    if node.is_empty_leaf() {
                        return Ok(Some(Value::Array(Vec::new())));
                    }
                    return Err(DecodeError::new(
                        key,
                        format!("is a list: give its items as {key}.{}.N.", list.item_name()),
                    ));
                };
                let mut out = Vec::new();
                for (_, child, child_key) in indexed(items, &items_key)? {
                    match self.value(list.member, child, &child_key)? {
                        Some(v) => out.push(v),
                        None => return Err(DecodeError::new(child_key, "has no value.")),
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            ShapeKind::Map(map) => {
                let (entries, entries_key) = if map.flattened {
                    (Some(node), key.to_string())
                } else {
                    (node.children.get("entry"), join(key, "entry"))
                };
                let Some(entries) = entries else {
                    if node.is_empty_leaf() {
                        return Ok(Some(Value::Object(Map::new())));
                    }
                    return Err(DecodeError::new(
                        key,
                        format!(
                            "is a map: give its entries as {key}.entry.N.{}.",
                            map.key_name
                        ),
                    ));
                };
                let mut out = Map::new();
                for (_, entry, entry_key) in indexed(entries, &entries_key)? {
                    let k_key = join(&entry_key, map.key_name);
                    let k = entry
                        .children
                        .get(map.key_name)
                        .and_then(|n| n.value)
                        .ok_or_else(|| DecodeError::new(k_key.as_str(), "is missing."))?;
                    let v_key = join(&entry_key, map.value_name);
                    let value = match entry.children.get(map.value_name) {
                        Some(v_node) => self.value(map.value, v_node, &v_key)?,
                        // A structure with no member set sends no parameter.
                        None if self.service.shape(map.value).kind.members().is_some() => {
                            Some(Value::Object(Map::new()))
                        }
                        None => return Err(DecodeError::new(v_key, "is missing.")),
                    };
                    if let Some(v) = value {
                        if out.insert(k.to_string(), v).is_some() {
                            return Err(DecodeError::new(k_key, format!("repeats the key '{k}'.")));
                        }
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            ShapeKind::Document => Err(DecodeError::new(
                key,
                "is a document, which the Query protocol cannot carry.",
            )),
            scalar_kind => {
                let Some(text) = node.value else {
                    return Err(DecodeError::new(
                        key,
                        "must be a single value, not a structure or list.",
                    ));
                };
                scalar_from_text(scalar_kind, text, key).map(Some)
            }
        }
    }
}

/// The key segment a member is spelled with: a flattened list whose member
/// has its own name is spelled with that name (botocore's rule).
fn query_name(service: &ServiceSchema, target: ShapeId, xml_name: &'static str) -> &'static str {
    match service.shape(target).kind {
        ShapeKind::List(l) if l.flattened => l.member_name.unwrap_or(xml_name),
        _ => xml_name,
    }
}

/// The children of a list or map node by their 1-based index, in order.
fn indexed<'n, 'a>(
    node: &'n Node<'a>,
    key: &str,
) -> Result<Vec<(u32, &'n Node<'a>, String)>, DecodeError> {
    let mut out = Vec::with_capacity(node.children.len());
    for (part, child) in &node.children {
        let child_key = join(key, part);
        let index = part
            .parse::<u32>()
            .ok()
            .filter(|i| *i >= 1 && part.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                DecodeError::new(
                    child_key.as_str(),
                    format!("is not a list position: '{part}' must be a number from 1."),
                )
            })?;
        out.push((index, child, child_key));
    }
    out.sort_by_key(|(i, _, _)| *i);
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(DecodeError::new(
            w[1].2.as_str(),
            "repeats a list position.",
        ));
    }
    Ok(out)
}

/// A scalar member's text as the JSON value its generated type reads.
pub(crate) fn scalar_from_text(
    kind: ShapeKind,
    text: &str,
    key: &str,
) -> Result<Value, DecodeError> {
    let bad = |what: &str| DecodeError::new(key, format!("must be {what}, not '{text}'."));
    Ok(match kind {
        ShapeKind::String => Value::String(text.to_string()),
        ShapeKind::Enum(values) => {
            if !values.contains(&text) {
                return Err(DecodeError::new(
                    key,
                    format!("must be one of {}, not '{text}'.", values.join(", ")),
                ));
            }
            Value::String(text.to_string())
        }
        ShapeKind::Integer | ShapeKind::Long => {
            let long = matches!(kind, ShapeKind::Long);
            match text.trim().parse::<i64>() {
                Ok(v) if scalar::in_range(v, long) => Value::from(v),
                _ => {
                    return Err(bad(if long {
                        "a whole number"
                    } else {
                        "a whole number within 32 bits"
                    }))
                }
            }
        }
        ShapeKind::Float | ShapeKind::Double => {
            // Rust also reads `inf` and `NaN`, which JSON cannot hold and no
            // AWS API accepts.
            match text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(scalar::float_value)
            {
                Some(v) => v,
                None => return Err(bad("a finite number")),
            }
        }
        ShapeKind::Boolean => match text {
            t if t.eq_ignore_ascii_case("true") => Value::Bool(true),
            t if t.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        ShapeKind::Timestamp(_) => {
            match scalar::parse_timestamp(text).and_then(scalar::float_value) {
                Some(v) => v,
                None => return Err(bad(
                    "a timestamp (ISO-8601, e.g. 2026-01-01T00:00:00Z, or seconds since the epoch)",
                )),
            }
        }
        ShapeKind::Blob => {
            if scalar::base64_decode(text).is_none() {
                return Err(bad("base64"));
            }
            Value::String(text.to_string())
        }
        ShapeKind::Structure(_)
        | ShapeKind::Union(_)
        | ShapeKind::List(_)
        | ShapeKind::Map(_)
        | ShapeKind::Document => return Err(DecodeError::new(key, "must not be a single value.")),
    })
}

/// A whole Query request body for an operation: `Action`, `Version` and the
/// input's parameters, as an AWS SDK writes it.
pub fn encode_input(
    service: &ServiceSchema,
    op: &OperationSchema,
    input: &Value,
) -> Result<Form, EncodeError> {
    let mut pairs = vec![
        ("Action".to_string(), op.name.to_string()),
        ("Version".to_string(), service.api_version.to_string()),
    ];
    if let Some(shape) = op.input {
        encode(service, shape, input, &mut pairs)?;
    }
    Ok(Form { pairs })
}

/// The parameters of a structure value, appended to `out` (botocore's Query
/// serializer, in Rust): members in the model's order, `null` skipped, an
/// empty list as `Name=`, an empty map or structure as nothing.
pub fn encode(
    service: &ServiceSchema,
    shape: ShapeId,
    value: &Value,
    out: &mut Vec<(String, String)>,
) -> Result<(), EncodeError> {
    Encoder { service, out }.value(shape, value, "")
}

struct Encoder<'s, 'o> {
    service: &'s ServiceSchema,
    out: &'o mut Vec<(String, String)>,
}

impl Encoder<'_, '_> {
    fn value(&mut self, shape: ShapeId, value: &Value, key: &str) -> Result<(), EncodeError> {
        let mismatch = |what: &str| {
            EncodeError::new(
                if key.is_empty() { "the input" } else { key },
                format!("must be {what}"),
            )
        };
        match self.service.shape(shape).kind {
            ShapeKind::Structure(members) | ShapeKind::Union(members) => {
                let obj = value.as_object().ok_or_else(|| mismatch("an object"))?;
                for m in members {
                    match obj.get(m.name) {
                        None | Some(Value::Null) => {}
                        Some(v) => {
                            let name = query_name(self.service, m.target, m.xml_name);
                            self.value(m.target, v, &join(key, name))?
                        }
                    }
                }
            }
            ShapeKind::List(list) => {
                let items = value.as_array().ok_or_else(|| mismatch("an array"))?;
                if items.is_empty() {
                    self.out.push((key.to_string(), String::new()));
                }
                let prefix = if list.flattened {
                    key.to_string()
                } else {
                    join(key, list.item_name())
                };
                for (i, item) in items.iter().enumerate() {
                    self.value(list.member, item, &format!("{prefix}.{}", i + 1))?;
                }
            }
            ShapeKind::Map(map) => {
                let entries = value.as_object().ok_or_else(|| mismatch("an object"))?;
                let prefix = if map.flattened {
                    key.to_string()
                } else {
                    join(key, "entry")
                };
                for (i, (k, v)) in entries.iter().filter(|(_, v)| !v.is_null()).enumerate() {
                    let entry = format!("{prefix}.{}", i + 1);
                    self.out.push((join(&entry, map.key_name), k.clone()));
                    self.value(map.value, v, &join(&entry, map.value_name))?;
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
                    Some(TimestampFormat::EpochSeconds) => scalar::format_f64(secs),
                    Some(TimestampFormat::Rfc822) => scalar::format_rfc822(secs)
                        .ok_or_else(|| mismatch("a date in the years 0-9999"))?,
                    Some(TimestampFormat::Iso8601) | None => scalar::format_iso8601(secs)
                        .ok_or_else(|| mismatch("a date in the years 0-9999"))?,
                };
                self.out.push((key.to_string(), text));
            }
            kind => {
                let text =
                    scalar_to_text(kind, value).ok_or_else(|| mismatch(scalar_name(kind)))?;
                self.out.push((key.to_string(), text));
            }
        }
        Ok(())
    }
}

/// The text of a scalar that is not a timestamp (Query parameters and XML
/// elements write them alike).
pub(crate) fn scalar_to_text(kind: ShapeKind, value: &Value) -> Option<String> {
    match (kind, value) {
        (ShapeKind::String | ShapeKind::Enum(_), Value::String(s)) => Some(s.clone()),
        (ShapeKind::Integer | ShapeKind::Long, Value::Number(n)) => {
            scalar::as_whole(n).map(|i| i.to_string())
        }
        (ShapeKind::Float | ShapeKind::Double, Value::Number(n)) => {
            n.as_f64().map(scalar::format_f64)
        }
        (ShapeKind::Boolean, Value::Bool(b)) => Some(b.to_string()),
        (ShapeKind::Blob, Value::String(s)) => scalar::base64_decode(s).map(|_| s.clone()),
        _ => None,
    }
}

pub(crate) fn scalar_name(kind: ShapeKind) -> &'static str {
    match kind {
        ShapeKind::String | ShapeKind::Enum(_) => "a string",
        ShapeKind::Integer | ShapeKind::Long => "a whole number",
        ShapeKind::Float | ShapeKind::Double => "a number",
        ShapeKind::Boolean => "a boolean",
        ShapeKind::Blob => "base64 text",
        ShapeKind::Timestamp(_) => "a number of seconds",
        ShapeKind::Structure(_) | ShapeKind::Union(_) | ShapeKind::Map(_) | ShapeKind::Document => {
            "an object"
        }
        ShapeKind::List(_) => "an array",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::wire::elbv2;
    use serde_json::json;

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).unwrap()
    }

    fn create_lb() -> &'static OperationSchema {
        elbv2::Operation::CreateLoadBalancer.schema()
    }

    #[test]
    fn forms_unescape_and_refuse_repeats() {
        let f = form("Action=X&Name=a+b%2Fc&Empty=&Bare&&Uni=%C3%A9");
        assert_eq!(f.action(), Some("X"));
        assert_eq!(f.get("Name"), Some("a b/c"));
        assert_eq!(f.get("Empty"), Some(""));
        assert_eq!(f.get("Bare"), Some(""));
        assert_eq!(f.get("Uni"), Some("é"));
        assert_eq!(
            Form::parse(b"A=1&A=2").unwrap_err().to_string(),
            "A is given more than once."
        );
        assert!(Form::parse(b"A=%FF").is_err());
        assert!(Form::parse(&[b'A', b'=', 0xff]).is_err());
        assert_eq!(form(&f.encode()), f);
    }

    #[test]
    fn lists_structures_and_empty_lists() {
        let f = form(
            "Action=CreateLoadBalancer&Version=2015-12-01&Name=web&Subnets.member.2=b&Subnets.member.1=a\
             &Tags.member.1.Key=k&Tags.member.1.Value=v&SecurityGroups=&Unknown.member.1=x&Type=network",
        );
        let v = decode_input(&elbv2::SERVICE, create_lb(), &f).unwrap();
        assert_eq!(
            v,
            json!({"Name": "web", "Subnets": ["a", "b"], "Tags": [{"Key": "k", "Value": "v"}], "SecurityGroups": [], "Type": "network"})
        );
    }

    #[test]
    fn list_positions_sort_as_numbers() {
        let pairs: Vec<_> = (1..=12)
            .rev()
            .map(|i| (format!("Subnets.member.{i}"), format!("s{i}")))
            .collect();
        let v = decode(
            &elbv2::SERVICE,
            create_lb().input.unwrap(),
            &Form::from_pairs(pairs),
        )
        .unwrap();
        let want: Vec<_> = (1..=12).map(|i| format!("s{i}")).collect();
        assert_eq!(v["Subnets"], json!(want));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let input = elbv2::Operation::CreateTargetGroup.schema();
        let err = |q: &str| {
            decode_input(&elbv2::SERVICE, input, &form(q))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("Port=eighty"),
            "Port must be a whole number within 32 bits, not 'eighty'."
        );
        assert_eq!(
            err("Port=99999999999"),
            "Port must be a whole number within 32 bits, not '99999999999'."
        );
        assert_eq!(
            err("HealthCheckEnabled=yes"),
            "HealthCheckEnabled must be true or false, not 'yes'."
        );
        assert_eq!(
            err("Protocol=SMTP").split(',').next().unwrap(),
            "Protocol must be one of HTTP"
        );
        assert_eq!(
            err("Matcher=200"),
            "Matcher is a structure: give its members as parameters of their own."
        );
        assert_eq!(
            err("Tags=x"),
            "Tags is a list: give its items as Tags.member.N."
        );
        assert_eq!(
            err("Tags.member.x.Key=k"),
            "Tags.member.x is not a list position: 'x' must be a number from 1."
        );
        assert_eq!(
            err("Tags.member.0.Key=k"),
            "Tags.member.0 is not a list position: '0' must be a number from 1."
        );
        assert_eq!(
            err("Tags.member.1.Key=k&Tags.member.01.Key=j"),
            "Tags.member.1 repeats a list position."
        );
        assert_eq!(
            err("Name.x=1"),
            "Name must be a single value, not a structure or list."
        );
        let deep = format!("Name{}=1", ".a".repeat(MAX_KEY_PARTS));
        assert!(err(&deep).contains("has more than 64 parts"));
        let ok = decode_input(
            &elbv2::SERVICE,
            input,
            &form("Port=80&HealthCheckEnabled=TRUE&Matcher.HttpCode=200"),
        )
        .unwrap();
        assert_eq!(
            ok,
            json!({"Port": 80, "HealthCheckEnabled": true, "Matcher": {"HttpCode": "200"}})
        );
    }

    #[test]
    fn maps_read_their_entries() {
        // No served ELBv2 or STS input has a map; CloudWatch's tags are lists.
        // Application Auto Scaling's TagResource has one (JSON only, but the
        // shape table is the same), so check the Query spelling on it.
        use flotilla_model::wire::autoscaling;
        let op = autoscaling::Operation::TagResource.schema();
        let f = form("ResourceARN=arn&Tags.entry.1.key=a&Tags.entry.1.value=1&Tags.entry.2.key=b&Tags.entry.2.value=2");
        let v = decode_input(&autoscaling::SERVICE, op, &f).unwrap();
        assert_eq!(
            v,
            json!({"ResourceARN": "arn", "Tags": {"a": "1", "b": "2"}})
        );
        let err =
            decode_input(&autoscaling::SERVICE, op, &form("Tags.entry.1.value=1")).unwrap_err();
        assert_eq!(err.to_string(), "Tags.entry.1.key is missing.");
        let back = encode_input(&autoscaling::SERVICE, op, &v).unwrap();
        assert_eq!(decode_input(&autoscaling::SERVICE, op, &back).unwrap(), v);
    }

    #[test]
    fn encoding_is_what_decoding_reads() {
        let v = json!({"Name": "web", "Subnets": ["a", "b"], "SecurityGroups": [], "Tags": [{"Key": "k"}], "Scheme": "internal"});
        let f = encode_input(&elbv2::SERVICE, create_lb(), &v).unwrap();
        assert_eq!(
            f.encode(),
            "Action=CreateLoadBalancer&Version=2015-12-01&Name=web&Subnets.member.1=a&Subnets.member.2=b\
             &SecurityGroups=&Scheme=internal&Tags.member.1.Key=k"
        );
        assert_eq!(decode_input(&elbv2::SERVICE, create_lb(), &f).unwrap(), v);
    }
}
