//! The protocol codecs of `flotilla-protocol` on arbitrary bytes.
//!
//! Input: a first line `SERVICE OPERATION CODEC` (`cloudwatch PutMetricData
//! cbor`, codec `query` or `cbor`), then the request body. The seeds in
//! `corpus/protocol/` are the botocore-serialized requests of
//! `crates/protocol/tests/botocore/fixtures.json`.
//!
//! Besides "never panic", a body that decodes must survive the way back: the
//! decoded value encodes without error and decodes to the same value (for
//! Query, up to what the protocol cannot spell: empty structures and maps).

use flotilla_model::wire::SERVICES;
use flotilla_protocol::{cbor, query, xml, Form};
use serde_json::Value;

pub fn protocol_one(data: &[u8]) {
    let Some(newline) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (header, body) = (&data[..newline], &data[newline + 1..]);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let mut parts = header.split(' ');
    let (Some(svc), Some(op), Some(codec)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Some(service) = SERVICES.iter().find(|s| s.module == svc) else {
        return;
    };
    let Some(op) = service.operation(op) else {
        return;
    };
    match codec {
        "cbor" => {
            let Ok(v) = cbor::decode_input(service, op, body) else {
                return;
            };
            let Some(shape) = op.input else { return };
            let again = cbor::encode(service, shape, &v).expect("a decoded value encodes");
            let back = cbor::decode(service, shape, &again).expect("our encoding decodes");
            assert!(same(&back, &v), "CBOR round trip changed {v} into {back}");
            // The same value as an XML document, as a response would carry it.
            let _ = xml::encode_element(service, shape, &v, "Input");
        }
        "query" => {
            let Ok(form) = Form::parse(body) else { return };
            let Ok(v) = query::decode_input(service, op, &form) else {
                return;
            };
            // What we write, we read back into a value we write the same
            // way. (The first writing may renumber list items: an item with
            // no known member sends nothing, so the next moves up.)
            let round = |v: &Value| {
                let form = query::encode_input(service, op, v).expect("a decoded value encodes");
                let reparsed = Form::parse(form.encode().as_bytes()).expect("our form parses");
                let back =
                    query::decode_input(service, op, &reparsed).expect("our encoding decodes");
                (form, back)
            };
            let (_, v2) = round(&v);
            let (f2, v3) = round(&v2);
            let (f3, _) = round(&v3);
            assert_eq!(f2, f3, "Query round trip of {v2} changed into {v3}");
            assert!(same(&v2, &v3), "Query round trip of {v2} changed into {v3}");
        }
        _ => {}
    }
}

/// Numbers by value (`3` and `3.0` alike).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
