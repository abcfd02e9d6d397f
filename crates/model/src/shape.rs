//! Checks a decoded request against the service model's rules: `required`
//! members and min/max limits. The generated wire types implement [`Shape`];
//! a violation names the field path and the rule, so the API front can answer
//! `InvalidParameterException` with a message a user can act on.

use std::collections::BTreeMap;
use std::fmt;

/// Where in a request a value sits: `containerDefinitions[0].portMappings[1].hostPort`.
/// Built on the stack while checking and rendered only when something is wrong.
#[derive(Clone, Copy)]
pub enum ShapePath<'a> {
    Root,
    Field(&'a ShapePath<'a>, &'static str),
    Index(&'a ShapePath<'a>, usize),
    Key(&'a ShapePath<'a>, &'a str),
}

impl<'a> ShapePath<'a> {
    pub fn field(&'a self, name: &'static str) -> ShapePath<'a> {
        ShapePath::Field(self, name)
    }
}

impl fmt::Display for ShapePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapePath::Root => Ok(()),
            ShapePath::Field(parent, name) => match parent {
                ShapePath::Root => f.write_str(name),
                _ => write!(f, "{parent}.{name}"),
            },
            ShapePath::Index(parent, i) => write!(f, "{parent}[{i}]"),
            ShapePath::Key(parent, k) => write!(f, "{parent}.{k}"),
        }
    }
}

/// A request value that breaks a rule of the service model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ShapeViolation {
    /// The path of the offending field, e.g. `containerDefinitions[0].name`.
    pub field: String,
    /// What the model requires, e.g. `is required`, `must be at most 65535`.
    pub rule: String,
}

impl ShapeViolation {
    pub fn new(at: ShapePath<'_>, rule: impl Into<String>) -> Self {
        ShapeViolation {
            field: at.to_string(),
            rule: rule.into(),
        }
    }
}

/// Implemented by every generated wire type; the default checks nothing.
pub trait Shape {
    fn check(&self, _at: &ShapePath<'_>) -> Result<(), ShapeViolation> {
        Ok(())
    }

    /// Checks a whole request.
    fn validate(&self) -> Result<(), ShapeViolation> {
        self.check(&ShapePath::Root)
    }
}

impl Shape for String {}
impl Shape for bool {}
impl Shape for i32 {}
impl Shape for i64 {}
impl Shape for f64 {}
/// A free-form document: the model sets no rules inside it.
impl Shape for serde_json::Value {}

impl<T: Shape> Shape for Vec<T> {
    fn check(&self, at: &ShapePath<'_>) -> Result<(), ShapeViolation> {
        for (i, item) in self.iter().enumerate() {
            item.check(&ShapePath::Index(at, i))?;
        }
        Ok(())
    }
}

impl<T: Shape> Shape for BTreeMap<String, T> {
    fn check(&self, at: &ShapePath<'_>) -> Result<(), ShapeViolation> {
        for (k, v) in self {
            v.check(&ShapePath::Key(at, k))?;
        }
        Ok(())
    }
}
