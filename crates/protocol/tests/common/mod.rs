//! What the protocol tests share: values of any generated shape made up from
//! the schema, an XML reader (the inverse of `xml`, as botocore reads it),
//! and the AWS CLI's Python for the tests that ask botocore itself.
#![allow(dead_code)]

use std::path::PathBuf;

use flotilla_model::wire::schema::{ServiceSchema, ShapeId, ShapeKind};
use serde_json::{Map, Value};

/// A small deterministic generator (SplitMix64): a proptest seed picks the
/// value, so a failure names a seed that reproduces it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// How deep generated values nest: deeper structures, lists and maps are
/// left out (recursive shapes would otherwise never end).
const MAX_DEPTH: usize = 6;

/// Characters that test the codecs: XML's specials, a carriage return, tabs
/// and newlines, spaces, non-ASCII letters and an astral-plane emoji.
const CHARS: &[char] = &[
    'a', 'b', 'Z', '0', '9', '-', '_', '.', '/', ':', ' ', '<', '>', '&', '"', '\'', '\t', '\n',
    '\r', '=', '+', '%', '#', 'é', '漢', '🚀', '\u{FFFD}',
];

pub fn gen_string(rng: &mut Rng) -> String {
    let n = rng.below(12) as usize;
    (0..n)
        .map(|_| CHARS[rng.below(CHARS.len() as u64) as usize])
        .collect()
}

/// A value of `shape` as `serde_json::to_value` of its generated type would
/// give it: members present at random, numbers in range, timestamps to the
/// millisecond, blobs base64.
pub fn gen_value(svc: &ServiceSchema, shape: ShapeId, rng: &mut Rng, depth: usize) -> Value {
    match svc.shape(shape).kind {
        ShapeKind::Union(members) => {
            // Exactly one member, as botocore insists.
            let m = members[rng.below(members.len() as u64) as usize];
            let mut obj = Map::new();
            obj.insert(m.name.to_string(), gen_value(svc, m.target, rng, depth + 1));
            Value::Object(obj)
        }
        ShapeKind::Structure(members) => {
            let mut obj = Map::new();
            for m in members {
                let target = svc.shape(m.target).kind;
                let nested = matches!(
                    target,
                    ShapeKind::Structure(_)
                        | ShapeKind::Union(_)
                        | ShapeKind::List(_)
                        | ShapeKind::Map(_)
                );
                if matches!(target, ShapeKind::Document)
                    || (nested && depth >= MAX_DEPTH)
                    || rng.chance(2)
                {
                    continue;
                }
                obj.insert(m.name.to_string(), gen_value(svc, m.target, rng, depth + 1));
            }
            Value::Object(obj)
        }
        ShapeKind::List(l) => {
            let n = if depth >= MAX_DEPTH { 0 } else { rng.below(4) };
            Value::Array(
                (0..n)
                    .map(|_| gen_value(svc, l.member, rng, depth + 1))
                    .collect(),
            )
        }
        ShapeKind::Map(m) => {
            let n = if depth >= MAX_DEPTH { 0 } else { rng.below(4) };
            let mut obj = Map::new();
            for _ in 0..n {
                let key = match gen_value(svc, m.key, rng, depth + 1) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                obj.insert(key, gen_value(svc, m.value, rng, depth + 1));
            }
            Value::Object(obj)
        }
        ShapeKind::String => Value::String(gen_string(rng)),
        ShapeKind::Enum(values) => {
            Value::String(values[rng.below(values.len() as u64) as usize].to_string())
        }
        ShapeKind::Integer => Value::from(match rng.below(3) {
            0 => rng.below(100) as i64,
            1 => rng.next() as i32 as i64,
            _ => [i32::MIN as i64, i32::MAX as i64, -1, 0][rng.below(4) as usize],
        }),
        ShapeKind::Long => Value::from(match rng.below(3) {
            0 => rng.below(100_000) as i64,
            1 => rng.next() as i64,
            _ => [i64::MIN, i64::MAX, -1, 0][rng.below(4) as usize],
        }),
        ShapeKind::Float => Value::from(f64::from((rng.next() as i32 as f32) / 64.0)),
        ShapeKind::Double => {
            let v = match rng.below(4) {
                0 => (rng.next() as i32) as f64 / 1024.0,
                1 => [
                    0.0,
                    1.0,
                    -1.5,
                    0.1,
                    1e300,
                    -2.5e-300,
                    123_456.789,
                    99.999_999_999_999,
                ][rng.below(8) as usize],
                2 => rng.below(1000) as f64,
                _ => loop {
                    let f = f64::from_bits(rng.next());
                    if f.is_finite() {
                        break f;
                    }
                },
            };
            Value::from(v)
        }
        ShapeKind::Boolean => Value::Bool(rng.chance(2)),
        ShapeKind::Timestamp(_) => {
            let ms = rng.below(4_102_444_800_000) as i64;
            let secs = ms.div_euclid(1000) as f64 + (ms.rem_euclid(1000) * 1_000_000) as f64 / 1e9;
            Value::from(secs)
        }
        ShapeKind::Blob => {
            let n = rng.below(16) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            Value::String(b64(&bytes))
        }
        ShapeKind::Document => Value::Null,
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Numbers compared by value (`3` and `3.0` alike), as every protocol but
/// JSON loses the difference, and the generated types do not keep it.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Drops what a Query request cannot spell: an empty structure or map below
/// the top sends no parameter at all, and neither does a list whose items
/// all send nothing (an empty list sends `Name=`).
pub fn without_empty_nested(v: &Value, top: bool) -> Option<Value> {
    match v {
        Value::Object(o) => {
            let out: Map<String, Value> = o
                .iter()
                .filter_map(|(k, v)| without_empty_nested(v, false).map(|v| (k.clone(), v)))
                .collect();
            (top || !out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a
                .iter()
                .filter_map(|v| without_empty_nested(v, false))
                .collect();
            (a.is_empty() || !out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// An XML element as botocore's parser sees it.
#[derive(Debug, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

/// Reads an XML document with quick-xml (text unescaped, line ends
/// normalized as an XML 1.0 parser does).
pub fn read_xml(xml: &[u8]) -> Element {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut stack = vec![Element::default()];
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed XML") {
            Event::Start(e) => stack.push(Element {
                name: String::from_utf8(e.local_name().as_ref().to_vec()).unwrap(),
                ..Default::default()
            }),
            Event::Empty(e) => {
                let el = Element {
                    name: String::from_utf8(e.local_name().as_ref().to_vec()).unwrap(),
                    ..Default::default()
                };
                stack.last_mut().unwrap().children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(el);
            }
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&t.xml10_content().unwrap()),
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r.decode().unwrap())
                        .expect("a predefined entity")
                        .to_string(),
                };
                stack.last_mut().unwrap().text.push_str(&text);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "one root element");
    root.children.pop().unwrap()
}

/// The value of `shape` in `el`, as botocore's XML parser reads it.
pub fn xml_value(svc: &ServiceSchema, shape: ShapeId, el: &Element) -> Value {
    match svc.shape(shape).kind {
        ShapeKind::Structure(members) | ShapeKind::Union(members) => {
            let mut obj = Map::new();
            for m in members {
                let flat_list = match svc.shape(m.target).kind {
                    ShapeKind::List(l) if l.flattened => Some(l.member_name.unwrap_or(m.xml_name)),
                    _ => None,
                };
                if let Some(name) = flat_list {
                    let items: Vec<&Element> =
                        el.children.iter().filter(|c| c.name == name).collect();
                    if !items.is_empty() {
                        let ShapeKind::List(l) = svc.shape(m.target).kind else {
                            unreachable!()
                        };
                        obj.insert(
                            m.name.to_string(),
                            Value::Array(
                                items.iter().map(|c| xml_value(svc, l.member, c)).collect(),
                            ),
                        );
                    }
                } else if let Some(child) = el.children.iter().find(|c| c.name == m.xml_name) {
                    obj.insert(m.name.to_string(), xml_value(svc, m.target, child));
                }
            }
            Value::Object(obj)
        }
        ShapeKind::List(l) => Value::Array(
            el.children
                .iter()
                .map(|c| xml_value(svc, l.member, c))
                .collect(),
        ),
        ShapeKind::Map(m) => {
            let mut obj = Map::new();
            for entry in &el.children {
                let k = entry
                    .children
                    .iter()
                    .find(|c| c.name == m.key_name)
                    .map(|c| c.text.clone())
                    .unwrap_or_default();
                let v = entry
                    .children
                    .iter()
                    .find(|c| c.name == m.value_name)
                    .map(|c| xml_value(svc, m.value, c))
                    .unwrap_or(Value::Null);
                obj.insert(k, v);
            }
            Value::Object(obj)
        }
        ShapeKind::String | ShapeKind::Enum(_) | ShapeKind::Blob => Value::String(el.text.clone()),
        ShapeKind::Integer | ShapeKind::Long => {
            Value::from(el.text.parse::<i64>().expect("an integer"))
        }
        ShapeKind::Float | ShapeKind::Double => {
            Value::from(el.text.parse::<f64>().expect("a number"))
        }
        ShapeKind::Boolean => Value::Bool(el.text == "true"),
        ShapeKind::Timestamp(_) => {
            let dt = time::OffsetDateTime::parse(
                &el.text,
                &time::format_description::well_known::Rfc3339,
            )
            .expect("an ISO-8601 timestamp");
            Value::from(dt.unix_timestamp() as f64 + f64::from(dt.nanosecond()) / 1e9)
        }
        ShapeKind::Document => Value::Null,
    }
}

/// The Python of the AWS CLI's virtual environment (`scripts/test` installs
/// it under `target/awscli-venv`), whose botocore the tests ask.
pub fn botocore_python() -> PathBuf {
    if let Ok(p) = std::env::var("FLOTILLA_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    if let Ok(cli) = std::env::var("FLOTILLA_TEST_AWS_CLI") {
        let p = PathBuf::from(cli).with_file_name("python");
        if p.exists() {
            return p;
        }
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/awscli-venv/bin/python");
    assert!(
        p.exists(),
        "botocore's Python not found at {}: run scripts/test once (it installs the AWS CLI there) or set FLOTILLA_TEST_PYTHON",
        p.display()
    );
    p
}
