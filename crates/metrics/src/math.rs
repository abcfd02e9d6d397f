//! Metric math: the expressions of GetMetricData and of alarms on
//! expressions (`MetricDataQuery.Expression`).
//!
//! Supported: numbers, query ids, `+ - * / ^`, unary minus, parentheses,
//! arrays `[a, b]`, and the functions `METRICS()` / `METRICS("text")` (the
//! metric queries of the request, optionally those whose label contains the
//! text), `SUM`, `AVG`, `MIN`, `MAX` (over an array: one time series, per
//! timestamp across its members; over one time series: a scalar), `ABS`,
//! `CEIL`, `FLOOR` and `FILL(x, value)` (missing periods filled with value).
//!
//! Semantics follow CloudWatch's: arithmetic between a series and a scalar
//! applies to every point; between two series it applies where both have a
//! point; a result that is not a finite number (division by zero) is left
//! out. Metrics Insights queries (`SELECT …`) and the other functions are
//! refused with an error naming the expression.

use std::collections::BTreeMap;

/// A time series: points by timestamp (milliseconds).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Series {
    pub label: String,
    pub points: BTreeMap<i64, f64>,
}

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Scalar(f64),
    Series(Series),
    Array(Vec<Series>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Metrics,
    Sum,
    Avg,
    Min,
    Max,
    Abs,
    Ceil,
    Floor,
    Fill,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Num(f64),
    Str(String),
    Id(String),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    Array(Vec<Expr>),
}

/// The values an expression can refer to.
pub(crate) trait Env {
    /// The result of the query with this id.
    fn get(&self, id: &str) -> Option<Value>;
    /// The metric (`MetricStat`) queries' series, those whose label contains
    /// `filter` when given.
    fn metrics(&self, filter: Option<&str>) -> Vec<Series>;
}

impl Expr {
    /// The query ids the expression refers to (`METRICS()` counts as a
    /// reference to every metric query, reported as `"METRICS()"`).
    pub fn references(&self, out: &mut Vec<String>) {
        match self {
            Expr::Id(id) => out.push(id.clone()),
            Expr::Neg(e) => e.references(out),
            Expr::Bin(_, a, b) => {
                a.references(out);
                b.references(out);
            }
            Expr::Call(Func::Metrics, _) => out.push("METRICS()".into()),
            Expr::Call(_, args) | Expr::Array(args) => args.iter().for_each(|a| a.references(out)),
            Expr::Num(_) | Expr::Str(_) => {}
        }
    }
}

/// Parses an expression; the error says what is wrong and where.
pub(crate) fn parse(text: &str) -> Result<Expr, String> {
    if text.trim_start().to_ascii_uppercase().starts_with("SELECT") {
        return Err("Metrics Insights queries are not supported; use metric math.".into());
    }
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let expr = parser.expr()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(expr),
        Some(t) => Err(format!(
            "Unexpected {} at position {}.",
            t.kind.describe(),
            t.at + 1
        )),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Num(f64),
    Str(String),
    Ident(String),
    Op(char),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Num(n) => format!("number {n}"),
            Kind::Str(s) => format!("string \"{s}\""),
            Kind::Ident(i) => format!("'{i}'"),
            Kind::Op(c) => format!("'{c}'"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    at: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let literal: String = chars[at..i].iter().collect();
            let n: f64 = literal
                .parse()
                .map_err(|_| format!("Invalid number '{literal}' at position {}.", at + 1))?;
            tokens.push(Token {
                kind: Kind::Num(n),
                at,
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Ident(chars[at..i].iter().collect()),
                at,
            });
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|d| *d == c)
                .ok_or_else(|| format!("Unterminated string at position {}.", at + 1))?;
            tokens.push(Token {
                kind: Kind::Str(chars[i + 1..i + 1 + end].iter().collect()),
                at,
            });
            i += end + 2;
        } else if "+-*/^(),[]".contains(c) {
            tokens.push(Token {
                kind: Kind::Op(c),
                at,
            });
            i += 1;
        } else {
            return Err(format!(
                "Unexpected character '{c}' at position {}.",
                at + 1
            ));
        }
    }
    Ok(tokens)
}

/// Nesting deeper than this is refused (the parser recurses).
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek_op(&self) -> Option<char> {
        match self.tokens.get(self.pos) {
            Some(Token {
                kind: Kind::Op(c), ..
            }) => Some(*c),
            _ => None,
        }
    }

    fn expect(&mut self, op: char) -> Result<(), String> {
        if self.peek_op() == Some(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(match self.tokens.get(self.pos) {
                Some(t) => format!(
                    "Expected '{op}' at position {}, found {}.",
                    t.at + 1,
                    t.kind.describe()
                ),
                None => format!("Expected '{op}' at the end of the expression."),
            })
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("The expression is nested too deeply.".into());
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.enter()?;
        let mut left = self.term()?;
        while let Some(op @ ('+' | '-')) = self.peek_op() {
            self.pos += 1;
            let right = self.term()?;
            let op = if op == '+' { BinOp::Add } else { BinOp::Sub };
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek_op() {
            self.pos += 1;
            let right = self.unary()?;
            let op = if op == '*' { BinOp::Mul } else { BinOp::Div };
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek_op() == Some('-') {
            self.pos += 1;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(inner)));
        }
        let base = self.primary()?;
        if self.peek_op() == Some('^') {
            self.pos += 1;
            self.enter()?;
            let exponent = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Bin(BinOp::Pow, Box::new(base), Box::new(exponent)));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(token) = self.tokens.get(self.pos).cloned() else {
            return Err("The expression ends too early.".into());
        };
        self.pos += 1;
        match token.kind {
            Kind::Num(n) => Ok(Expr::Num(n)),
            Kind::Str(s) => Ok(Expr::Str(s)),
            Kind::Op('(') => {
                let inner = self.expr()?;
                self.expect(')')?;
                Ok(inner)
            }
            Kind::Op('[') => {
                let items = self.list(']')?;
                Ok(Expr::Array(items))
            }
            Kind::Ident(name) if self.peek_op() == Some('(') => {
                self.pos += 1;
                let func = match name.as_str() {
                    "METRICS" => Func::Metrics,
                    "SUM" => Func::Sum,
                    "AVG" => Func::Avg,
                    "MIN" => Func::Min,
                    "MAX" => Func::Max,
                    "ABS" => Func::Abs,
                    "CEIL" => Func::Ceil,
                    "FLOOR" => Func::Floor,
                    "FILL" => Func::Fill,
                    _ => {
                        return Err(format!(
                            "Unsupported function {name} at position {}. Supported: METRICS, SUM, AVG, MIN, MAX, ABS, CEIL, FLOOR, FILL.",
                            token.at + 1
                        ))
                    }
                };
                let args = self.list(')')?;
                let arity_ok = match func {
                    Func::Metrics => {
                        args.len() <= 1 && args.iter().all(|a| matches!(a, Expr::Str(_)))
                    }
                    Func::Fill => args.len() == 2,
                    _ => args.len() == 1,
                };
                if !arity_ok {
                    return Err(format!(
                        "Wrong arguments to {name} at position {}.",
                        token.at + 1
                    ));
                }
                Ok(Expr::Call(func, args))
            }
            Kind::Ident(name) => {
                let valid = name.starts_with(|c: char| c.is_ascii_lowercase());
                if !valid {
                    return Err(format!(
                        "Unknown name '{name}' at position {}: ids start with a lowercase letter.",
                        token.at + 1
                    ));
                }
                Ok(Expr::Id(name))
            }
            Kind::Op(c) => Err(format!("Unexpected '{c}' at position {}.", token.at + 1)),
        }
    }

    /// Comma-separated expressions up to `close` (consumed).
    fn list(&mut self, close: char) -> Result<Vec<Expr>, String> {
        let mut items = Vec::new();
        if self.peek_op() == Some(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.peek_op() == Some(',') {
                self.pos += 1;
                continue;
            }
            self.expect(close)?;
            return Ok(items);
        }
    }
}

/// Evaluates an expression.
pub(crate) fn eval(expr: &Expr, env: &dyn Env) -> Result<Value, String> {
    match expr {
        Expr::Num(n) => Ok(Value::Scalar(*n)),
        Expr::Str(s) => Err(format!(
            "A string (\"{s}\") is only allowed as the argument of METRICS."
        )),
        Expr::Id(id) => env.get(id).ok_or_else(|| format!("Unknown id '{id}'.")),
        Expr::Neg(inner) => Ok(map(eval(inner, env)?, |v| -v)),
        Expr::Bin(op, a, b) => binary(*op, eval(a, env)?, eval(b, env)?),
        Expr::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match eval(item, env)? {
                    Value::Series(s) => out.push(s),
                    Value::Array(mut a) => out.append(&mut a),
                    Value::Scalar(_) => {
                        return Err("An array holds time series, not numbers.".into())
                    }
                }
            }
            Ok(Value::Array(out))
        }
        Expr::Call(func, args) => call(*func, args, env),
    }
}

fn call(func: Func, args: &[Expr], env: &dyn Env) -> Result<Value, String> {
    match func {
        Func::Metrics => {
            let filter = match args.first() {
                Some(Expr::Str(s)) => Some(s.as_str()),
                _ => None,
            };
            Ok(Value::Array(env.metrics(filter)))
        }
        Func::Abs => Ok(map(eval(&args[0], env)?, f64::abs)),
        Func::Ceil => Ok(map(eval(&args[0], env)?, f64::ceil)),
        Func::Floor => Ok(map(eval(&args[0], env)?, f64::floor)),
        Func::Fill => {
            let value = match eval(&args[1], env)? {
                Value::Scalar(v) => v,
                _ => return Err("FILL takes a number as its second argument.".into()),
            };
            let timestamps = env
                .metrics(None)
                .into_iter()
                .flat_map(|s| s.points.into_keys())
                .collect::<Vec<_>>();
            let fill = |mut s: Series| {
                for ts in &timestamps {
                    s.points.entry(*ts).or_insert(value);
                }
                s
            };
            Ok(match eval(&args[0], env)? {
                Value::Series(s) => Value::Series(fill(s)),
                Value::Array(a) => Value::Array(a.into_iter().map(fill).collect()),
                Value::Scalar(v) => Value::Scalar(v),
            })
        }
        Func::Sum | Func::Avg | Func::Min | Func::Max => {
            let reduce = |values: &[f64]| -> f64 {
                match func {
                    Func::Sum => values.iter().sum(),
                    Func::Avg => values.iter().sum::<f64>() / values.len() as f64,
                    Func::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                    _ => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                }
            };
            match eval(&args[0], env)? {
                Value::Scalar(v) => Ok(Value::Scalar(v)),
                Value::Series(s) => {
                    let values: Vec<f64> = s.points.values().copied().collect();
                    if values.is_empty() {
                        return Ok(Value::Series(Series::default()));
                    }
                    Ok(Value::Scalar(reduce(&values)))
                }
                Value::Array(members) => {
                    let mut by_ts: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                    for s in &members {
                        for (ts, v) in &s.points {
                            by_ts.entry(*ts).or_default().push(*v);
                        }
                    }
                    let points = by_ts
                        .into_iter()
                        .map(|(ts, values)| (ts, reduce(&values)))
                        .filter(|(_, v)| v.is_finite())
                        .collect();
                    Ok(Value::Series(Series {
                        label: String::new(),
                        points,
                    }))
                }
            }
        }
    }
}

fn map(value: Value, f: impl Fn(f64) -> f64) -> Value {
    let series = |s: Series| Series {
        label: s.label,
        points: s
            .points
            .into_iter()
            .map(|(t, v)| (t, f(v)))
            .filter(|(_, v)| v.is_finite())
            .collect(),
    };
    match value {
        Value::Scalar(v) => Value::Scalar(f(v)),
        Value::Series(s) => Value::Series(series(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(series).collect()),
    }
}

fn apply(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Pow => a.powf(b),
    }
}

fn binary(op: BinOp, a: Value, b: Value) -> Result<Value, String> {
    let pair = |x: &Series, y: &Series| Series {
        label: x.label.clone(),
        points: x
            .points
            .iter()
            .filter_map(|(t, v)| y.points.get(t).map(|w| (*t, apply(op, *v, *w))))
            .filter(|(_, v)| v.is_finite())
            .collect(),
    };
    Ok(match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(apply(op, x, y)),
        (Value::Series(s), Value::Scalar(y)) => map(Value::Series(s), |v| apply(op, v, y)),
        (Value::Scalar(x), Value::Series(s)) => map(Value::Series(s), |v| apply(op, x, v)),
        (Value::Series(x), Value::Series(y)) => Value::Series(pair(&x, &y)),
        (Value::Array(a), Value::Scalar(y)) => map(Value::Array(a), |v| apply(op, v, y)),
        (Value::Scalar(x), Value::Array(a)) => map(Value::Array(a), |v| apply(op, x, v)),
        (Value::Array(a), Value::Series(y)) => {
            Value::Array(a.iter().map(|x| pair(x, &y)).collect())
        }
        (Value::Series(x), Value::Array(a)) => {
            Value::Array(a.iter().map(|y| pair(&x, y)).collect())
        }
        (Value::Array(_), Value::Array(_)) => {
            return Err("Arithmetic between two arrays of time series is not supported.".into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<String, Series>);

    impl Env for Vars {
        fn get(&self, id: &str) -> Option<Value> {
            self.0.get(id).cloned().map(Value::Series)
        }
        fn metrics(&self, filter: Option<&str>) -> Vec<Series> {
            let mut all: Vec<Series> = self
                .0
                .values()
                .filter(|s| filter.is_none_or(|f| s.label.contains(f)))
                .cloned()
                .collect();
            all.sort_by(|a, b| a.label.cmp(&b.label));
            all
        }
    }

    fn series(label: &str, points: &[(i64, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.iter().copied().collect(),
        }
    }

    fn vars() -> Vars {
        let mut m = HashMap::new();
        m.insert(
            "errors".into(),
            series("Errors", &[(0, 2.0), (60, 4.0), (120, 0.0)]),
        );
        m.insert(
            "requests".into(),
            series("Requests", &[(0, 100.0), (60, 0.0), (180, 10.0)]),
        );
        Vars(m)
    }

    fn run(text: &str) -> Value {
        eval(&parse(text).unwrap(), &vars()).unwrap()
    }

    fn points(v: Value) -> Vec<(i64, f64)> {
        match v {
            Value::Series(s) => s.points.into_iter().collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arithmetic_between_series_keeps_common_finite_points() {
        // 60: 4/0 is infinite and 120, 180 are not in both.
        assert_eq!(points(run("100 * errors / requests")), vec![(0, 2.0)]);
        assert_eq!(
            points(run("errors + 1")),
            vec![(0, 3.0), (60, 5.0), (120, 1.0)]
        );
        assert_eq!(
            points(run("-errors ^ 2")),
            vec![(0, -4.0), (60, -16.0), (120, -0.0)]
        );
        assert_eq!(run("1 + 2 * 3 - 4 / 2"), Value::Scalar(5.0));
        assert_eq!(run("(1 + 2) * 3"), Value::Scalar(9.0));
        assert_eq!(run("2 ^ 3 ^ 2"), Value::Scalar(512.0));
    }

    #[test]
    fn aggregate_functions_over_arrays_and_series() {
        assert_eq!(
            points(run("SUM(METRICS())")),
            vec![(0, 102.0), (60, 4.0), (120, 0.0), (180, 10.0)]
        );
        assert_eq!(
            points(run("MAX([errors, requests])")),
            vec![(0, 100.0), (60, 4.0), (120, 0.0), (180, 10.0)]
        );
        assert_eq!(
            points(run("MIN(METRICS(\"Err\"))")),
            vec![(0, 2.0), (60, 4.0), (120, 0.0)]
        );
        assert_eq!(
            points(run("AVG(METRICS())")),
            vec![(0, 51.0), (60, 2.0), (120, 0.0), (180, 10.0)]
        );
        assert_eq!(run("AVG(errors)"), Value::Scalar(2.0));
        assert_eq!(run("MAX(requests)"), Value::Scalar(100.0));
        assert_eq!(
            points(run("errors - AVG(errors)")),
            vec![(0, 0.0), (60, 2.0), (120, -2.0)]
        );
        assert_eq!(
            points(run("FILL(errors, 0)")),
            vec![(0, 2.0), (60, 4.0), (120, 0.0), (180, 0.0)]
        );
        assert_eq!(
            points(run("ABS(errors - 3)")),
            vec![(0, 1.0), (60, 1.0), (120, 3.0)]
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (text, needle) in [
            ("1 +", "ends too early"),
            ("(1 + 2", "')'"),
            ("RATE(m1)", "Unsupported function RATE"),
            ("m1 $ 2", "Unexpected character '$'"),
            ("Errors", "lowercase"),
            (
                "SELECT AVG(CPUUtilization) FROM SCHEMA(\"AWS/EC2\")",
                "Metrics Insights",
            ),
            ("SUM(1, 2)", "Wrong arguments"),
            ("1 2", "Unexpected number 2"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = eval(&parse("nope + 1").unwrap(), &vars()).unwrap_err();
        assert!(err.contains("Unknown id 'nope'"), "{err}");
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&deep).unwrap_err().contains("nested too deeply"));
    }

    #[test]
    fn references_are_listed() {
        let mut refs = Vec::new();
        parse("SUM(METRICS()) / m1 + e2")
            .unwrap()
            .references(&mut refs);
        assert_eq!(refs, ["METRICS()", "m1", "e2"]);
    }
}
