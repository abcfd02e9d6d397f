//! The CloudWatch Logs filter-pattern language: parser and matcher.
//!
//! [`FilterPattern::parse`] turns a `filterPattern` into a tree once per
//! request; [`FilterPattern::matches`] tests one event's message. Parsing
//! works on any input (bounded nesting, no recursion on input length beyond
//! [`MAX_DEPTH`], no panics); an invalid pattern is a [`PatternError`],
//! which the API reports as `InvalidParameterException: Invalid filter
//! pattern`.
//!
//! Supported, after AWS's "Filter pattern syntax" page:
//! - the empty (or all-blank) pattern matches every event;
//! - terms (`ERROR`), all of which must appear, case-sensitively, anywhere
//!   in the message (a term is a substring: `ERROR` matches `ERRORNEOUS`);
//! - quoted phrases (`"INTERNAL SERVER ERROR"`), with `\"` and `\\` escapes;
//! - `?term` alternatives: the event matches if any appears. As in AWS, when
//!   a pattern mixes plain terms and `?` terms, the `?` terms are ignored;
//! - `-term` exclusions: none may appear;
//! - `%regex%` terms (a regular expression searched in the message);
//! - JSON patterns `{ SELECTOR OP VALUE }` on messages that are JSON:
//!   selectors `$.a.b`, `$.a[0].b`; `=` and `!=` with strings (quoted or
//!   bare, `*` as a wildcard) or numbers; `<`, `<=`, `>`, `>=` with numbers;
//!   `IS TRUE`, `IS FALSE`, `IS NULL`, `NOT EXISTS`; `&&`, `||` (`&&` binds
//!   tighter) and parentheses.
//!
//! - space-delimited patterns `[ip, user, ..., status = 4*, bytes > 1000]`:
//!   the message is split into fields at blanks (a field in double quotes
//!   or square brackets may hold blanks; the delimiters are not part of its
//!   value); each name takes one field, `...` any number of them, and
//!   without `...` the counts must agree. A field's condition tests that
//!   field: `=`, `!=` (strings with `*` wildcards, or numbers), `<`, `<=`,
//!   `>`, `>=` (numbers), combined with `&&` and `||`
//!   (`status = 4* || status = 5*`).
//!
//! Not supported yet (an error says so): regular expressions inside JSON
//! and space-delimited patterns, and space-delimited conditions that test
//! another field than their own.

use regex::Regex;
use serde_json::Value;

/// How deep parentheses may nest in a JSON pattern.
pub const MAX_DEPTH: usize = 32;

/// Why a pattern is invalid, and where (a character offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub reason: String,
    pub position: usize,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at character {})", self.reason, self.position)
    }
}

fn err<T>(reason: impl Into<String>, position: usize) -> Result<T, PatternError> {
    Err(PatternError {
        reason: reason.into(),
        position,
    })
}

/// A parsed filter pattern.
#[derive(Debug, Clone)]
pub struct FilterPattern {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    All,
    Terms(Terms),
    Json(Expr),
    Delimited(Vec<Slot>),
}

#[derive(Debug, Clone)]
enum Term {
    Text(String),
    Regex(Regex),
}

impl Term {
    fn found_in(&self, message: &str) -> bool {
        match self {
            Term::Text(text) => message.contains(text.as_str()),
            Term::Regex(re) => re.is_match(message),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Terms {
    required: Vec<Term>,
    optional: Vec<Term>,
    excluded: Vec<Term>,
}

impl FilterPattern {
    /// Parses a `filterPattern`.
    pub fn parse(pattern: &str) -> Result<FilterPattern, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        let first = chars.iter().position(|c| !c.is_whitespace());
        let kind = match first {
            None => Kind::All,
            Some(i) if chars[i] == '{' => Kind::Json(JsonParser::new(&chars).parse()?),
            Some(i) if chars[i] == '[' => Kind::Delimited(parse_delimited(&chars, i)?),
            Some(_) => Kind::Terms(parse_terms(&chars)?),
        };
        Ok(FilterPattern { kind })
    }

    /// Whether the pattern matches every event (no need to look).
    pub fn matches_all(&self) -> bool {
        matches!(self.kind, Kind::All)
    }

    /// Whether an event with this message matches.
    pub fn matches(&self, message: &str) -> bool {
        match &self.kind {
            Kind::All => true,
            Kind::Terms(terms) => {
                let included = if !terms.required.is_empty() {
                    terms.required.iter().all(|t| t.found_in(message))
                } else if !terms.optional.is_empty() {
                    terms.optional.iter().any(|t| t.found_in(message))
                } else {
                    true
                };
                included && !terms.excluded.iter().any(|t| t.found_in(message))
            }
            Kind::Json(expr) => match serde_json::from_str::<Value>(message) {
                Ok(doc) => expr.eval(&doc),
                Err(_) => false,
            },
            Kind::Delimited(slots) => delimited_match(slots, &split_fields(message)),
        }
    }
}

/// Terms, phrases, `?` and `-` prefixes, separated by blanks.
fn parse_terms(chars: &[char]) -> Result<Terms, PatternError> {
    let mut terms = Terms::default();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let bucket = match chars[i] {
            '?' => {
                i += 1;
                &mut terms.optional
            }
            '-' => {
                i += 1;
                &mut terms.excluded
            }
            _ => &mut terms.required,
        };
        if i >= chars.len() || chars[i].is_whitespace() {
            return err("an operator '?' or '-' must be followed by a term", start);
        }
        let term = if chars[i] == '"' {
            let (text, next) = quoted(chars, i)?;
            i = next;
            if i < chars.len() && !chars[i].is_whitespace() {
                return err("a quoted phrase must be followed by a blank", i);
            }
            if text.is_empty() {
                return err("empty quoted phrase", start);
            }
            Term::Text(text)
        } else if chars[i] == '%' && chars[i + 1..].contains(&'%') {
            // A regular expression runs to the next '%', blanks included.
            let end = i + 1 + chars[i + 1..].iter().position(|&c| c == '%').unwrap_or(0);
            let source: String = chars[i + 1..end].iter().collect();
            let term = Term::Regex(regex(&source, i)?);
            i = end + 1;
            if i < chars.len() && !chars[i].is_whitespace() {
                return err("a regular expression must be followed by a blank", i);
            }
            term
        } else {
            let word_start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '"' {
                    return err("a quote inside a term: quote the whole term", i);
                }
                i += 1;
            }
            Term::Text(chars[word_start..i].iter().collect())
        };
        bucket.push(term);
    }
    Ok(terms)
}

fn regex(source: &str, position: usize) -> Result<Regex, PatternError> {
    if source.is_empty() {
        return err("empty regular expression", position);
    }
    regex::RegexBuilder::new(source)
        .size_limit(1 << 20)
        .nest_limit(MAX_DEPTH as u32)
        .build()
        .or_else(|e| err(format!("invalid regular expression: {e}"), position))
}

/// A quoted string starting at `chars[start] == '"'`: its text and the
/// index after the closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), PatternError> {
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((text, i + 1)),
            '\\' if i + 1 < chars.len() && matches!(chars[i + 1], '"' | '\\') => {
                text.push(chars[i + 1]);
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    err("unterminated quoted string", start)
}

/// A JSON pattern's boolean expression.
#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Test(Selector, Test),
}

#[derive(Debug, Clone)]
enum Step {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone)]
struct Selector(Vec<Step>);

impl Selector {
    fn resolve<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let mut value = doc;
        for step in &self.0 {
            value = match (step, value) {
                (Step::Field(name), Value::Object(map)) => map.get(name)?,
                (Step::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Literal {
    /// A number as written (also compared as text against string fields).
    Number(f64, String),
    /// A string; `*` matches any run of characters.
    Text(String),
}

#[derive(Debug, Clone)]
enum Test {
    Compare(Cmp, Literal),
    IsTrue,
    IsFalse,
    IsNull,
    NotExists,
}

impl Expr {
    fn eval(&self, doc: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.eval(doc) && b.eval(doc),
            Expr::Or(a, b) => a.eval(doc) || b.eval(doc),
            Expr::Test(selector, test) => {
                let value = selector.resolve(doc);
                match test {
                    Test::NotExists => value.is_none(),
                    Test::IsTrue => value == Some(&Value::Bool(true)),
                    Test::IsFalse => value == Some(&Value::Bool(false)),
                    Test::IsNull => value == Some(&Value::Null),
                    Test::Compare(cmp, literal) => match value {
                        None => false,
                        Some(value) => compare(value, *cmp, literal),
                    },
                }
            }
        }
    }
}

fn compare(value: &Value, cmp: Cmp, literal: &Literal) -> bool {
    match cmp {
        Cmp::Eq => equals(value, literal),
        Cmp::Ne => !equals(value, literal),
        ordering => {
            let (Literal::Number(n, _), Some(v)) = (literal, value.as_f64()) else {
                return false;
            };
            match ordering {
                Cmp::Lt => v < *n,
                Cmp::Le => v <= *n,
                Cmp::Gt => v > *n,
                Cmp::Ge => v >= *n,
                Cmp::Eq | Cmp::Ne => unreachable!("handled above"),
            }
        }
    }
}

fn equals(value: &Value, literal: &Literal) -> bool {
    let text = match value {
        Value::String(s) => s.as_str(),
        Value::Number(n) => {
            if let (Literal::Number(want, _), Some(have)) = (literal, n.as_f64()) {
                return have == *want;
            }
            return wildcard(literal_text(literal), &n.to_string());
        }
        Value::Bool(b) => {
            return wildcard(literal_text(literal), if *b { "true" } else { "false" });
        }
        Value::Null | Value::Array(_) | Value::Object(_) => return false,
    };
    wildcard(literal_text(literal), text)
}

fn literal_text(literal: &Literal) -> &str {
    match literal {
        Literal::Number(_, text) | Literal::Text(text) => text,
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (greedy with one backtrack point: linear in practice,
/// O(n·m) at worst).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LParen,
    RParen,
    And,
    Or,
    Cmp(Cmp),
    Selector(Vec<StepTok>),
    Quoted(String),
    Word(String),
}

#[derive(Debug, Clone, PartialEq)]
enum StepTok {
    Field(String),
    Index(usize),
}

struct JsonParser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '(' | ')' | '{' | '}' | '&' | '|' | '=' | '!' | '<' | '>' | '"'
        )
}

fn is_field_char(c: char) -> bool {
    is_word_char(c) && !matches!(c, '.' | '[' | ']')
}

impl JsonParser {
    fn new(chars: &[char]) -> JsonParser {
        JsonParser {
            toks: Vec::new(),
            pos: 0,
            end: chars.len(),
        }
        .lexed(chars)
    }

    fn lexed(mut self, chars: &[char]) -> JsonParser {
        // Lexing errors are kept as a Word token the parser rejects with
        // its position; simpler than a second error path.
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let start = i;
            let tok = match c {
                c if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                '{' => {
                    i += 1;
                    Tok::Open
                }
                '}' => {
                    i += 1;
                    Tok::Close
                }
                '(' => {
                    i += 1;
                    Tok::LParen
                }
                ')' => {
                    i += 1;
                    Tok::RParen
                }
                '&' if chars.get(i + 1) == Some(&'&') => {
                    i += 2;
                    Tok::And
                }
                '|' if chars.get(i + 1) == Some(&'|') => {
                    i += 2;
                    Tok::Or
                }
                '=' => {
                    i += 1;
                    Tok::Cmp(Cmp::Eq)
                }
                '!' if chars.get(i + 1) == Some(&'=') => {
                    i += 2;
                    Tok::Cmp(Cmp::Ne)
                }
                '<' | '>' => {
                    let or_equal = chars.get(i + 1) == Some(&'=');
                    i += if or_equal { 2 } else { 1 };
                    Tok::Cmp(match (c, or_equal) {
                        ('<', false) => Cmp::Lt,
                        ('<', true) => Cmp::Le,
                        ('>', false) => Cmp::Gt,
                        _ => Cmp::Ge,
                    })
                }
                '"' => match quoted(chars, i) {
                    Ok((text, next)) => {
                        i = next;
                        Tok::Quoted(text)
                    }
                    Err(_) => {
                        i = chars.len();
                        Tok::Word("\"".into())
                    }
                },
                '$' => match selector(chars, i) {
                    Some((steps, next)) => {
                        i = next;
                        Tok::Selector(steps)
                    }
                    None => {
                        i += 1;
                        Tok::Word("$".into())
                    }
                },
                c if is_word_char(c) => {
                    while i < chars.len() && is_word_char(chars[i]) {
                        i += 1;
                    }
                    Tok::Word(chars[start..i].iter().collect())
                }
                other => {
                    i += 1;
                    Tok::Word(other.to_string())
                }
            };
            self.toks.push((tok, start));
        }
        self
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn here(&self) -> usize {
        self.toks.get(self.pos).map(|(_, p)| *p).unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<Tok> {
        let tok = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        tok
    }

    fn parse(mut self) -> Result<Expr, PatternError> {
        if self.next() != Some(Tok::Open) {
            return err("a JSON pattern starts with '{'", 0);
        }
        let expr = self.or(0)?;
        if self.peek() != Some(&Tok::Close) {
            return err(
                "expected '}' (a JSON pattern must end with '}')",
                self.here(),
            );
        }
        self.pos += 1;
        if self.pos < self.toks.len() {
            return err("nothing may follow the closing '}'", self.here());
        }
        Ok(expr)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, PatternError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, PatternError> {
        let mut left = self.unary(depth)?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, PatternError> {
        if depth >= MAX_DEPTH {
            return err("parentheses nest too deeply", self.here());
        }
        let at = self.here();
        match self.next() {
            Some(Tok::LParen) => {
                let inner = self.or(depth + 1)?;
                if self.next() != Some(Tok::RParen) {
                    return err("expected ')'", at);
                }
                Ok(inner)
            }
            Some(Tok::Selector(steps)) => {
                let selector = Selector(
                    steps
                        .into_iter()
                        .map(|s| match s {
                            StepTok::Field(f) => Step::Field(f),
                            StepTok::Index(i) => Step::Index(i),
                        })
                        .collect(),
                );
                let test = self.test()?;
                Ok(Expr::Test(selector, test))
            }
            _ => err("expected a selector such as $.field or '('", at),
        }
    }

    fn test(&mut self) -> Result<Test, PatternError> {
        let at = self.here();
        match self.next() {
            Some(Tok::Cmp(cmp)) => {
                let value_at = self.here();
                let literal = match self.next() {
                    Some(Tok::Quoted(text)) => Literal::Text(text),
                    Some(Tok::Word(word)) => match number(&word) {
                        Some(n) => Literal::Number(n, word),
                        None => Literal::Text(word),
                    },
                    _ => return err("expected a value after the operator", value_at),
                };
                if !matches!(cmp, Cmp::Eq | Cmp::Ne) && !matches!(literal, Literal::Number(..)) {
                    return err("<, <=, > and >= compare with a number", value_at);
                }
                Ok(Test::Compare(cmp, literal))
            }
            Some(Tok::Word(word)) if word.eq_ignore_ascii_case("IS") => {
                let value_at = self.here();
                match self.next() {
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("TRUE") => Ok(Test::IsTrue),
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("FALSE") => Ok(Test::IsFalse),
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NULL") => Ok(Test::IsNull),
                    _ => err("IS takes TRUE, FALSE or NULL", value_at),
                }
            }
            Some(Tok::Word(word)) if word.eq_ignore_ascii_case("NOT") => {
                let value_at = self.here();
                match self.next() {
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("EXISTS") => Ok(Test::NotExists),
                    _ => err("expected EXISTS after NOT", value_at),
                }
            }
            _ => err(
                "expected an operator (=, !=, <, <=, >, >=, IS, NOT EXISTS) after the selector",
                at,
            ),
        }
    }
}

/// A selector `$`, `$.a.b`, `$.a[0]`, `$[1].b` at `chars[start] == '$'`.
fn selector(chars: &[char], start: usize) -> Option<(Vec<StepTok>, usize)> {
    let mut steps = Vec::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            Some('.') => {
                let from = i + 1;
                let mut j = from;
                while j < chars.len() && is_field_char(chars[j]) {
                    j += 1;
                }
                if j == from {
                    return None;
                }
                steps.push(StepTok::Field(chars[from..j].iter().collect()));
                i = j;
            }
            Some('[') => {
                let from = i + 1;
                let mut j = from;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                if j == from || chars.get(j) != Some(&']') {
                    return None;
                }
                let digits: String = chars[from..j].iter().collect();
                steps.push(StepTok::Index(digits.parse().ok()?));
                i = j + 1;
            }
            _ => return Some((steps, i)),
        }
    }
}

/// One item of a space-delimited pattern.
#[derive(Debug, Clone)]
enum Slot {
    /// `...`: any number of fields.
    Any,
    /// One field; it matches if any of the `||` alternatives (each a list
    /// of `&&` conditions) holds, or always when there are none.
    Field(Vec<Vec<(Cmp, Literal)>>),
}

fn parse_delimited(chars: &[char], open: usize) -> Result<Vec<Slot>, PatternError> {
    let close = chars
        .iter()
        .rposition(|c| !c.is_whitespace())
        .filter(|&i| chars[i] == ']' && i > open)
        .ok_or(PatternError {
            reason: "a space-delimited pattern must end with ']'".into(),
            position: chars.len(),
        })?;
    // Items are separated by commas outside double quotes.
    let mut items = Vec::new();
    let mut start = open + 1;
    let mut quoted = false;
    for (i, &c) in chars.iter().enumerate().take(close).skip(open + 1) {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {}
            ',' if !quoted => {
                items.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return err("unterminated quoted string", start);
    }
    items.push((start, close));
    let mut slots = Vec::new();
    for (from, to) in items {
        slots.push(parse_slot(&chars[from..to], from)?);
    }
    if slots.len() == 1
        && matches!(&slots[0], Slot::Field(c) if c.is_empty())
        && chars[open + 1..close].iter().all(|c| c.is_whitespace())
    {
        return err("an empty space-delimited pattern", open);
    }
    Ok(slots)
}

fn parse_slot(item: &[char], offset: usize) -> Result<Slot, PatternError> {
    let text: String = item.iter().collect();
    if text.trim() == "..." {
        return Ok(Slot::Any);
    }
    let lexed = JsonParser::new(item);
    let toks: Vec<(Tok, usize)> = lexed
        .toks
        .into_iter()
        .map(|(t, p)| (t, p + offset))
        .collect();
    let Some((Tok::Word(name), _)) = toks.first() else {
        return err(
            "each item of a space-delimited pattern starts with a field name or is '...'",
            offset,
        );
    };
    let name = name.clone();
    let mut alternatives: Vec<Vec<(Cmp, Literal)>> = Vec::new();
    let mut current: Vec<(Cmp, Literal)> = Vec::new();
    let mut i = 1;
    if i == toks.len() {
        return Ok(Slot::Field(alternatives));
    }
    loop {
        let at = toks.get(i).map_or(offset + item.len(), |t| t.1);
        let Some((Tok::Cmp(cmp), _)) = toks.get(i) else {
            return err(
                "expected an operator (=, !=, <, <=, >, >=) after the field name",
                at,
            );
        };
        let value_at = toks.get(i + 1).map_or(offset + item.len(), |t| t.1);
        let literal = match toks.get(i + 1) {
            Some((Tok::Quoted(text), _)) => Literal::Text(text.clone()),
            Some((Tok::Word(word), _)) => match number(word) {
                Some(n) => Literal::Number(n, word.clone()),
                None => Literal::Text(word.clone()),
            },
            _ => return err("expected a value after the operator", value_at),
        };
        if !matches!(cmp, Cmp::Eq | Cmp::Ne) && !matches!(literal, Literal::Number(..)) {
            return err("<, <=, > and >= compare with a number", value_at);
        }
        current.push((*cmp, literal));
        i += 2;
        match toks.get(i) {
            None => break,
            Some((Tok::And, _)) | Some((Tok::Or, _)) => {
                if matches!(toks[i].0, Tok::Or) {
                    alternatives.push(std::mem::take(&mut current));
                }
                match toks.get(i + 1) {
                    Some((Tok::Word(w), _)) if *w == name => i += 2,
                    Some((_, p)) => {
                        return err(
                            format!("a condition here may only test its own field '{name}'"),
                            *p,
                        )
                    }
                    None => return err("a condition is missing after && or ||", toks[i].1),
                }
            }
            Some((_, p)) => return err("expected && or || between conditions", *p),
        }
    }
    alternatives.push(current);
    Ok(Slot::Field(alternatives))
}

/// A message's fields: runs of non-blank characters, where a run that
/// starts with `"` or `[` extends to the closing `"` or `]`.
fn split_fields(message: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut rest = message.trim_start();
    while !rest.is_empty() {
        let (field, next) = match rest.as_bytes()[0] {
            b'"' => match rest[1..].find('"') {
                Some(end) => (&rest[1..1 + end], &rest[end + 2..]),
                None => (&rest[1..], ""),
            },
            b'[' => match rest[1..].find(']') {
                Some(end) => (&rest[1..1 + end], &rest[end + 2..]),
                None => (&rest[1..], ""),
            },
            _ => match rest.find(char::is_whitespace) {
                Some(end) => (&rest[..end], &rest[end..]),
                None => (rest, ""),
            },
        };
        fields.push(field);
        rest = next.trim_start();
    }
    fields
}

fn slot_matches(conditions: &[Vec<(Cmp, Literal)>], field: &str) -> bool {
    if conditions.is_empty() {
        return true;
    }
    let value = match number(field) {
        Some(n) => {
            serde_json::Number::from_f64(n).map_or(Value::String(field.to_owned()), Value::Number)
        }
        None => Value::String(field.to_owned()),
    };
    conditions.iter().any(|all| {
        all.iter().all(|(cmp, literal)| match (cmp, &value) {
            // Text equality compares the field as written ("007" = 007 as text too).
            (Cmp::Eq | Cmp::Ne, Value::Number(_)) if matches!(literal, Literal::Text(_)) => {
                (*cmp == Cmp::Eq) == wildcard(literal_text(literal), field)
            }
            _ => compare(&value, *cmp, literal),
        })
    })
}

/// Whether the fields line up with the slots (`...` takes any number).
fn delimited_match(slots: &[Slot], fields: &[&str]) -> bool {
    // reachable[j]: the slots so far can consume exactly the first j fields.
    let mut reachable = vec![false; fields.len() + 1];
    reachable[0] = true;
    for slot in slots {
        let mut next = vec![false; fields.len() + 1];
        match slot {
            Slot::Any => {
                let mut seen = false;
                for j in 0..=fields.len() {
                    seen |= reachable[j];
                    next[j] = seen;
                }
            }
            Slot::Field(conditions) => {
                for j in 0..fields.len() {
                    if reachable[j] && slot_matches(conditions, fields[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[fields.len()]
}

/// A JSON-style number (`-12`, `3.5`, `1e3`), not `inf`, `nan` or `0x1`.
fn number(word: &str) -> Option<f64> {
    let body = word.strip_prefix('-').unwrap_or(word);
    let first = body.chars().next()?;
    if !first.is_ascii_digit() {
        return None;
    }
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    word.parse::<f64>().ok().filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, message: &str) -> bool {
        FilterPattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern:?}: {e}"))
            .matches(message)
    }

    fn invalid(pattern: &str) {
        assert!(
            FilterPattern::parse(pattern).is_err(),
            "{pattern:?} should be invalid"
        );
    }

    #[test]
    fn empty_matches_everything() {
        assert!(m("", "anything"));
        assert!(m("   ", "anything"));
        assert!(FilterPattern::parse("").unwrap().matches_all());
    }

    #[test]
    fn terms_are_case_sensitive_substrings_and_all_must_appear() {
        assert!(m("ERROR", "[ERROR 400] BAD REQUEST"));
        assert!(m("ERROR", "ERRORNEOUS PROGRAM"));
        assert!(!m("ERROR", "Error: entity not found!"));
        assert!(!m("ERROR", "rpc error"));
        assert!(m("ERROR ARGUMENTS", "[ERROR 419] MISSING ARGUMENTS"));
        assert!(!m("ERROR ARGUMENTS", "[ERROR 400] BAD REQUEST"));
    }

    #[test]
    fn quoted_phrases_match_exactly() {
        assert!(m(
            "\"INTERNAL SERVER ERROR\"",
            "500 INTERNAL SERVER ERROR here"
        ));
        assert!(!m("\"INTERNAL SERVER ERROR\"", "INTERNAL ERROR SERVER"));
        assert!(m("\"ERROR][grpc\"", "2025-03-28 [ERROR][grpc] failed"));
        assert!(!m("\"ERROR][grpc\"", "[ERROR] [grpc]"));
        assert!(m(r#""say \"hi\"""#, r#"they say "hi" twice"#));
    }

    #[test]
    fn question_mark_terms_are_alternatives() {
        assert!(m("?BAD ?INVALID", "[ERROR 400] BAD REQUEST"));
        assert!(m("?BAD ?INVALID", "[ERROR 420] INVALID ARGUMENTS"));
        assert!(!m("?BAD ?INVALID", "[ERROR 419] MISSING ARGUMENTS"));
        assert!(m("?\"clean up\" ?xyz", "map clean up"));
        assert!(!m("?\"clean up\" ?xyz", "map is cleaned up"));
        // Mixed with plain terms, the alternatives are ignored (AWS does so).
        assert!(m("ERROR ?WARN", "ERROR only"));
    }

    #[test]
    fn minus_terms_exclude() {
        assert!(m("ERROR -ARGUMENTS", "[ERROR 400] BAD REQUEST"));
        assert!(!m("ERROR -ARGUMENTS", "[ERROR 420] INVALID ARGUMENTS"));
        assert!(m("-DEBUG", "INFO started"));
        assert!(!m("-DEBUG", "DEBUG noise"));
        assert!(!m("?A ?B -C", "A C"));
        assert!(m("?A ?B -C", "B"));
    }

    #[test]
    fn regex_terms() {
        assert!(m("%AUTHORIZED%", "[ERROR 401] UNAUTHORIZED REQUEST"));
        assert!(m("%colou?r%", "the color red"));
        assert!(!m("%^colou?r%", "the color red"));
        assert!(m("%POST /[a-z]% -DEBUG", "POST /y done"));
        assert!(m("100%", "100% done"), "a lone % is text");
        invalid("%(%");
    }

    #[test]
    fn invalid_term_patterns() {
        invalid("?");
        invalid("ERROR -");
        invalid("\"unterminated");
        invalid("\"\"");
        invalid("ab\"cd\"");
    }

    const ACCESS: &str =
        r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 404 1534"#;

    #[test]
    fn space_delimited_fields_and_ellipsis() {
        assert!(m(
            "[ip, user, username, timestamp, request, status_code, bytes]",
            ACCESS
        ));
        assert!(
            !m(
                "[ip, user, username, timestamp, request, status_code]",
                ACCESS
            ),
            "count must agree"
        );
        assert!(m("[..., status_code, bytes]", ACCESS));
        assert!(m("[ip, ...]", ACCESS));
        assert!(m("[ip, ..., bytes]", ACCESS));
        assert!(m("[...]", ACCESS));
        assert!(m("[ip = 127.0.0.1, ...]", ACCESS));
        assert!(m(r#"[ip, user, username = "frank", ...]"#, ACCESS));
        assert!(
            m(
                "[ip, user, username, timestamp = 10/Oct/2000*, ...]",
                ACCESS
            ),
            "brackets group a field"
        );
        assert!(
            m(
                r#"[ip, user, username, timestamp, request = "GET *gif*", ...]"#,
                ACCESS
            ),
            "quotes group a field"
        );
        assert!(m("[..., status_code = 4*, bytes]", ACCESS));
        assert!(!m("[..., status_code = 5*, bytes]", ACCESS));
        assert!(m(
            "[..., status_code = 5* || status_code = 4*, bytes]",
            ACCESS
        ));
        assert!(m(
            "[..., status_code >= 400 && status_code < 500, bytes > 1000]",
            ACCESS
        ));
        assert!(!m("[..., status_code != 404, bytes]", ACCESS));
        assert!(m("[w1 = ERROR, ...]", "ERROR something broke"));
        assert!(!m("[w1 = ERROR, ...]", "INFO fine ERROR"));
        assert!(m("[w1, w2]", "a  b"));
        assert!(!m("[w1, w2]", ""));
    }

    #[test]
    fn invalid_space_delimited_patterns() {
        for p in [
            "[a, b",
            "[]",
            "[a = ]",
            "[a b]",
            "[a, b > x]",
            "[a = 1 && b = 2]",
            "[a = 1 ||]",
            "[= 1]",
            r#"[a = "x]"#,
        ] {
            invalid(p);
        }
    }

    const DOC: &str = r#"{"eventType":"UpdateTrail","user":{"id":1,"name":"John"},
        "users":[{"email":"John.Doe@example.com"},{"email":"x@y"}],
        "latency":512.5,"code":404,"ok":true,"bad":false,"gone":null,
        "ip":"123.123.4.5","actions":["GET","PUT","DELETE"]}"#;

    #[test]
    fn json_string_equality_with_wildcards() {
        assert!(m(r#"{ $.eventType = "UpdateTrail" }"#, DOC));
        assert!(m("{ $.eventType = UpdateTrail }", DOC));
        assert!(m(r#"{ $.eventType = "Update*" }"#, DOC));
        assert!(m(r#"{ $.eventType = "*Trail" }"#, DOC));
        assert!(!m(r#"{ $.eventType = "Delete*" }"#, DOC));
        assert!(m("{ $.ip != 10.0.* }", DOC));
        assert!(!m("{ $.ip != 123.123.* }", DOC));
        assert!(m(r#"{ $.user.name = "John" }"#, DOC));
        assert!(!m(r#"{ $.user.name = "john" }"#, DOC));
        // A missing field neither equals nor differs.
        assert!(!m(r#"{ $.missing != "x" }"#, DOC));
    }

    #[test]
    fn json_numbers() {
        assert!(m("{ $.code = 404 }", DOC));
        assert!(m("{ $.code = 4* }", DOC));
        assert!(m("{ $.code != 500 }", DOC));
        assert!(m("{ $.latency > 500 }", DOC));
        assert!(m("{ $.latency >= 512.5 }", DOC));
        assert!(!m("{ $.latency < 512.5 }", DOC));
        assert!(m("{ $.latency <= 512.5 }", DOC));
        assert!(m("{ $.user.id = 1 }", DOC));
        assert!(m("{ $.user.id = 1.0 }", DOC));
        assert!(m("{ $.code > -1e3 }", DOC));
        // A string field is not a number for ordering.
        assert!(!m("{ $.eventType > 1 }", DOC));
        invalid("{ $.code > abc }");
    }

    #[test]
    fn json_arrays_booleans_null_exists() {
        assert!(m(r#"{ $.users[0].email = "John.Doe@example.com" }"#, DOC));
        assert!(m(r#"{ $.users[1].email = "x@y" }"#, DOC));
        assert!(!m(r#"{ $.users[2].email = "x@y" }"#, DOC));
        assert!(m(r#"{ $.actions[2] = "DELETE" }"#, DOC));
        assert!(m("{ $.ok IS TRUE }", DOC));
        assert!(!m("{ $.ok IS FALSE }", DOC));
        assert!(m("{ $.bad IS FALSE }", DOC));
        assert!(m("{ $.gone IS NULL }", DOC));
        assert!(!m("{ $.missing IS NULL }", DOC));
        assert!(m("{ $.missing NOT EXISTS }", DOC));
        assert!(!m("{ $.gone NOT EXISTS }", DOC));
        assert!(m("{ $.ok is true }", DOC));
    }

    #[test]
    fn json_and_or_parentheses() {
        assert!(m(
            r#"{ ($.user.id = 1) && ($.users[0].email = "John.Doe@example.com") }"#,
            DOC
        ));
        assert!(m(
            r#"{ ($.user.id = 2 && $.users[0].email = "nope") || $.actions[2] = "DELETE" }"#,
            DOC
        ));
        assert!(!m(
            r#"{ ($.user.id = 2 || $.code = 500) && $.ok IS TRUE }"#,
            DOC
        ));
        // && binds tighter than ||.
        assert!(m("{ $.code = 1 && $.code = 2 || $.ok IS TRUE }", DOC));
        assert!(!m("{ $.ok IS TRUE && $.code = 1 || $.code = 2 }", DOC));
    }

    #[test]
    fn json_patterns_do_not_match_plain_text() {
        assert!(!m("{ $.a NOT EXISTS }", "not json"));
        assert!(!m("{ $.a = 1 }", "[1, 2"));
    }

    #[test]
    fn invalid_json_patterns() {
        for p in [
            "{",
            "{ }",
            "{ $.a = 1",
            "{ $.a = 1 } extra",
            "{ $.a }",
            "{ $.a = }",
            "{ $. = 1 }",
            "{ $.a[x] = 1 }",
            "{ $.a IS MAYBE }",
            "{ $.a NOT THERE }",
            "{ ($.a = 1 }",
            "{ $.a = 1 && }",
            "{ a = 1 }",
            "{ $.a = \"x }",
            "{ $.a = 1 & $.b = 2 }",
        ] {
            invalid(p);
        }
        let deep = format!("{{ {}$.a = 1{} }}", "(".repeat(100), ")".repeat(100));
        invalid(&deep);
        let ok = format!("{{ {}$.a = 1{} }}", "(".repeat(10), ")".repeat(10));
        assert!(FilterPattern::parse(&ok).is_ok());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
        assert!(wildcard("**", "x"));
        assert!(wildcard("é*", "éa"));
        assert!(!wildcard("", "x"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any input parses or fails cleanly, and a parsed pattern can be
        /// evaluated on any message.
        #[test]
        fn never_panics(pattern in "[ -~é{}\\[\\]()$.&|!=<>\"%*?-]{0,80}", message in "[ -~]{0,60}") {
            if let Ok(p) = FilterPattern::parse(&pattern) {
                let _ = p.matches(&message);
                let _ = p.matches(DOC);
                let _ = p.matches(ACCESS);
            }
        }

        /// Any Unicode at all, in patterns and messages.
        #[test]
        fn never_panics_on_any_text(pattern in "\\PC{0,40}", message in "\\PC{0,40}") {
            for p in [pattern.clone(), format!("{{{pattern}}}"), format!("[{pattern}]"), format!("%{pattern}%")] {
                if let Ok(p) = FilterPattern::parse(&p) {
                    let _ = p.matches(&message);
                }
            }
        }
    }
}
