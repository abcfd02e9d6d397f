//! Lexer and recursive-descent parser for the Cluster Query Language.
//!
//! Grammar (keywords and subjects are case-insensitive; attribute names and
//! values are not):
//!
//! ```text
//! or        := and ( ("||" | "or") and )*
//! and       := unary ( ("&&" | "and") unary )*
//! unary     := ("!" | "not") unary | "(" or ")" | predicate
//! predicate := subject ( "exists" | "!exists" | "not_exists"
//!                      | cmp value | ("in" | "!in" | "not_in") list
//!                      | ("=~" | "matches" | "!~" | "not_matches") value )
//! cmp       := "==" | "equals" | "!=" | "not_equals" | ">" | "greater_than"
//!            | ">=" | "greater_than_equal" | "<" | "less_than"
//!            | "<=" | "less_than_equal"
//! list      := "[" value ( "," value )* "]"
//! value     := bare word | "double-quoted" | 'single-quoted'
//! ```
//!
//! Values are lexed by context, because ECS expressions put regexes and
//! dates unquoted (`attribute:ecs.instance-type =~ t3.*`): after an operator
//! a bare word runs to whitespace, a quote, `&&`, `||`, or a comma, `)` or
//! `]` that closes nothing inside the word (so `(t3|m5).*` is one value). Inside quotes a backslash escapes the quote or a backslash and is
//! otherwise kept, so regexes such as `"m5\.large"` need no doubling.
//!
//! Positions in errors count characters from 1.

use std::fmt;

use regex::RegexBuilder;

use super::ast::{
    bare_word_len, Comparison, Expression, Operand, Pattern, Predicate, Subject, Test,
};
use super::value::{parse_time, Version};

/// ECS's limit on an expression's length, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 2000;

/// How deep parentheses and negations may nest. Expressions come from the
/// network; recursion must stay far from the stack's end.
pub const MAX_NESTING: usize = 64;

/// ECS attribute names are at most 128 characters.
const MAX_ATTRIBUTE_NAME: usize = 128;

/// Compiled regex size cap: patterns come from the network.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why an expression did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based character position where the problem was found (one past the
    /// last character for problems at the end).
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

pub(crate) fn parse(input: &str) -> Result<Expression, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    if chars.len() > MAX_EXPRESSION_CHARS {
        return Err(ParseError {
            position: MAX_EXPRESSION_CHARS + 1,
            message: format!(
                "expression is {} characters long; at most {MAX_EXPRESSION_CHARS} are allowed",
                chars.len()
            ),
        });
    }
    let mut p = Parser {
        chars,
        pos: 0,
        depth: 0,
    };
    let expr = p.or()?;
    p.skip_ws();
    if p.pos < p.chars.len() {
        return Err(p.error_here(format!(
            "unexpected {}; expected &&, ||, or the end of the expression",
            p.describe_here()
        )));
    }
    Ok(expr)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

/// Characters of a subject such as `attribute:ecs.instance-type` or `task:group`.
fn is_subject_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-' | '/' | '\\')
}

fn is_attribute_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '\\')
}

impl Parser {
    fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            position: pos + 1,
            message: message.into(),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.chars.get(self.pos + k) == Some(&c))
    }

    /// A short description of what is at the cursor, for error messages.
    fn describe_here(&self) -> String {
        match self.peek() {
            None => "end of expression".to_owned(),
            Some(_) => {
                let s: String = self.chars[self.pos..]
                    .iter()
                    .take_while(|c| !c.is_whitespace())
                    .take(20)
                    .collect();
                format!("'{s}'")
            }
        }
    }

    /// The word (letters, digits, `_`) at the cursor, without consuming it.
    fn peek_word(&self) -> String {
        self.chars[self.pos..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect()
    }

    /// Consumes `keyword` (case-insensitive) if it is a whole word at the cursor.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let word = self.peek_word();
        if word.eq_ignore_ascii_case(keyword) {
            // A subject character right after (e.g. `or.x`) means it is not
            // the keyword but the start of something else.
            let next = self.chars.get(self.pos + word.chars().count()).copied();
            if next.is_some_and(|c| is_subject_char(c) && !c.is_ascii_alphanumeric() && c != '_') {
                return false;
            }
            self.pos += word.chars().count();
            return true;
        }
        false
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error_here(format!(
                "expression nests too deeply (at most {MAX_NESTING} levels of parentheses and negations)"
            )));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expression, ParseError> {
        let mut left = self.and()?;
        loop {
            self.skip_ws();
            if self.starts_with("||") {
                self.pos += 2;
            } else if !self.eat_keyword("or") {
                return Ok(left);
            }
            let right = self.and()?;
            left = Expression::Or(Box::new(left), Box::new(right));
        }
    }

    fn and(&mut self) -> Result<Expression, ParseError> {
        let mut left = self.unary()?;
        loop {
            self.skip_ws();
            if self.starts_with("&&") {
                self.pos += 2;
            } else if !self.eat_keyword("and") {
                return Ok(left);
            }
            let right = self.unary()?;
            left = Expression::And(Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expression, ParseError> {
        self.skip_ws();
        let negation = if self.peek() == Some('!') {
            self.pos += 1;
            true
        } else {
            self.eat_keyword("not")
        };
        if negation {
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expression::Not(Box::new(inner)));
        }
        if self.peek() == Some('(') {
            let open = self.pos;
            self.pos += 1;
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            self.skip_ws();
            if self.peek() != Some(')') {
                return Err(self.error_here(format!(
                    "expected ')' to close the '(' at position {}, found {}",
                    open + 1,
                    self.describe_here()
                )));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.predicate().map(Expression::Predicate)
    }

    fn predicate(&mut self) -> Result<Predicate, ParseError> {
        let start = self.pos;
        let text: String = self.chars[self.pos..]
            .iter()
            .take_while(|c| is_subject_char(**c))
            .collect();
        if text.is_empty() {
            return Err(self.error_here(format!(
                "expected a subject such as attribute:ecs.availability-zone, found {}",
                self.describe_here()
            )));
        }
        self.pos += text.chars().count();
        let subject = self.subject(&text, start)?;
        self.skip_ws();
        let op_pos = self.pos;
        let op = self
            .operator()
            .ok_or_else(|| self.error_at(op_pos, format!("expected an operator after '{text}'")))?;
        let test = match op {
            Op::Exists => Test::Exists,
            Op::NotExists => Test::NotExists,
            Op::Cmp(cmp) => {
                check_operator(&subject, op, op_pos, self)?;
                let (value, at) = self.value(op.symbol())?;
                Test::Compare(cmp, typed_operand(&subject, value, at, self)?)
            }
            Op::In | Op::NotIn => {
                check_operator(&subject, op, op_pos, self)?;
                let list = self.list(op.symbol())?;
                let mut operands = Vec::with_capacity(list.len());
                for (value, at) in list {
                    operands.push(typed_operand(&subject, value, at, self)?);
                }
                if op == Op::In {
                    Test::In(operands)
                } else {
                    Test::NotIn(operands)
                }
            }
            Op::Matches | Op::NotMatches => {
                check_operator(&subject, op, op_pos, self)?;
                let (source, at) = self.value(op.symbol())?;
                let regex = RegexBuilder::new(&format!("^(?:{source})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| self.error_at(at, regex_message(&source, &e)))?;
                let pattern = Pattern { source, regex };
                if op == Op::Matches {
                    Test::Matches(pattern)
                } else {
                    Test::NotMatches(pattern)
                }
            }
        };
        Ok(Predicate { subject, test })
    }

    fn subject(&self, text: &str, start: usize) -> Result<Subject, ParseError> {
        if let Some((prefix, name)) = text.split_once(':') {
            if prefix.eq_ignore_ascii_case("attribute") {
                let name_pos = start + prefix.chars().count() + 1;
                if name.is_empty() {
                    return Err(
                        self.error_at(name_pos, "expected an attribute name after 'attribute:'")
                    );
                }
                if let Some((i, c)) = name
                    .chars()
                    .enumerate()
                    .find(|(_, c)| !is_attribute_name_char(*c))
                {
                    return Err(self.error_at(
                        name_pos + i,
                        format!("'{c}' is not allowed in an attribute name (letters, digits, -, _, ., /, \\)"),
                    ));
                }
                if name.chars().count() > MAX_ATTRIBUTE_NAME {
                    return Err(self.error_at(
                        name_pos,
                        format!("attribute name is longer than {MAX_ATTRIBUTE_NAME} characters"),
                    ));
                }
                return Ok(Subject::Attribute(name.to_owned()));
            }
        }
        let known = [
            ("agentConnected", Subject::AgentConnected),
            ("agentVersion", Subject::AgentVersion),
            ("ec2InstanceId", Subject::Ec2InstanceId),
            ("registeredAt", Subject::RegisteredAt),
            ("runningTasksCount", Subject::RunningTasksCount),
            ("task:group", Subject::TaskGroup),
        ];
        for (name, subject) in known {
            if text.eq_ignore_ascii_case(name) {
                return Ok(subject);
            }
        }
        Err(self.error_at(
            start,
            format!(
                "unknown subject '{text}'; expected agentConnected, agentVersion, attribute:<name>, \
                 ec2InstanceId, registeredAt, runningTasksCount or task:group"
            ),
        ))
    }

    fn operator(&mut self) -> Option<Op> {
        let symbols = [
            ("==", Op::Cmp(Comparison::Eq)),
            ("!=", Op::Cmp(Comparison::Ne)),
            (">=", Op::Cmp(Comparison::Ge)),
            ("<=", Op::Cmp(Comparison::Le)),
            (">", Op::Cmp(Comparison::Gt)),
            ("<", Op::Cmp(Comparison::Lt)),
            ("=~", Op::Matches),
            ("!~", Op::NotMatches),
        ];
        for (sym, op) in symbols {
            if self.starts_with(sym) {
                self.pos += sym.chars().count();
                return Some(op);
            }
        }
        let negated = self.peek() == Some('!');
        if negated {
            self.pos += 1;
        }
        let word = self.peek_word();
        let op = match (negated, word.to_ascii_lowercase().as_str()) {
            (true, "exists") | (false, "not_exists") => Op::NotExists,
            (true, "in") | (false, "not_in") => Op::NotIn,
            (false, "exists") => Op::Exists,
            (false, "in") => Op::In,
            (false, "equals") => Op::Cmp(Comparison::Eq),
            (false, "not_equals") => Op::Cmp(Comparison::Ne),
            (false, "greater_than") => Op::Cmp(Comparison::Gt),
            (false, "greater_than_equal") => Op::Cmp(Comparison::Ge),
            (false, "less_than") => Op::Cmp(Comparison::Lt),
            (false, "less_than_equal") => Op::Cmp(Comparison::Le),
            (false, "matches") => Op::Matches,
            (false, "not_matches") => Op::NotMatches,
            _ => {
                if negated {
                    self.pos -= 1;
                }
                return None;
            }
        };
        self.pos += word.chars().count();
        Some(op)
    }

    /// A value after `after` (an operator, for messages); returns it with
    /// its 0-based start.
    fn value(&mut self, after: &str) -> Result<(String, usize), ParseError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.pos += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(self
                                .error_at(start, format!("unterminated string: no closing {q}")))
                        }
                        Some(c) if c == q => {
                            self.pos += 1;
                            return Ok((out, start));
                        }
                        Some('\\') if matches!(self.peek_at(1), Some(n) if n == q || n == '\\') => {
                            out.extend(self.peek_at(1));
                            self.pos += 2;
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            _ => {
                self.pos += bare_word_len(&self.chars[start..]).0;
                if self.pos == start {
                    return Err(self.error_here(format!(
                        "expected a value after '{after}', found {}",
                        self.describe_here()
                    )));
                }
                Ok((self.chars[start..self.pos].iter().collect(), start))
            }
        }
    }

    fn list(&mut self, after: &str) -> Result<Vec<(String, usize)>, ParseError> {
        self.skip_ws();
        if self.peek() != Some('[') {
            return Err(self.error_here(format!(
                "expected '[' to start a list after '{after}', found {}",
                self.describe_here()
            )));
        }
        self.pos += 1;
        let mut items = vec![self.value(after)?];
        loop {
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.pos += 1;
                    items.push(self.value(",")?);
                }
                Some(']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => {
                    return Err(self.error_here(format!(
                        "expected ',' or ']' in the list, found {}",
                        self.describe_here()
                    )))
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Cmp(Comparison),
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Exists => "exists",
            Op::NotExists => "!exists",
            Op::Cmp(c) => c.symbol(),
            Op::In => "in",
            Op::NotIn => "!in",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        }
    }
}

/// The operators the ECS documentation lists per subject; `exists` is
/// allowed everywhere. Attributes take every operator (ordering compares
/// numerically when both sides are numbers).
fn check_operator(subject: &Subject, op: Op, at: usize, p: &Parser) -> Result<(), ParseError> {
    let ordering = matches!(op, Op::Cmp(c) if c.is_ordering());
    let set_or_regex = matches!(op, Op::In | Op::NotIn | Op::Matches | Op::NotMatches);
    let (ok, allowed) = match subject {
        Subject::Attribute(_) => (true, ""),
        Subject::AgentConnected | Subject::Ec2InstanceId | Subject::TaskGroup => {
            (!ordering, "==, !=, in, !in, =~, !~, exists or !exists")
        }
        Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
            (!set_or_regex, "==, !=, >, >=, <, <=, exists or !exists")
        }
    };
    if ok {
        Ok(())
    } else {
        Err(p.error_at(
            at,
            format!(
                "operator '{}' is not valid for {subject}; use {allowed}",
                op.symbol()
            ),
        ))
    }
}

fn typed_operand(
    subject: &Subject,
    value: String,
    at: usize,
    p: &Parser,
) -> Result<Operand, ParseError> {
    match subject {
        Subject::Attribute(_) | Subject::Ec2InstanceId | Subject::TaskGroup => {
            Ok(Operand::Text(value))
        }
        Subject::AgentConnected => {
            if value.eq_ignore_ascii_case("true") {
                Ok(Operand::Bool(true))
            } else if value.eq_ignore_ascii_case("false") {
                Ok(Operand::Bool(false))
            } else {
                Err(p.error_at(
                    at,
                    format!("expected true or false for agentConnected, found '{value}'"),
                ))
            }
        }
        Subject::AgentVersion => Version::parse_strict(&value)
            .map(Operand::Version)
            .ok_or_else(|| {
                p.error_at(
                    at,
                    format!("expected a version such as 1.82.1 for agentVersion, found '{value}'"),
                )
            }),
        Subject::RegisteredAt => parse_time(&value)
            .map(Operand::Time)
            .map_err(|why| p.error_at(at, format!("{why} for registeredAt, found '{value}'"))),
        Subject::RunningTasksCount => value
            .parse::<u64>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .map(Operand::Count)
            .ok_or_else(|| {
                p.error_at(
                    at,
                    format!("expected a whole number for runningTasksCount, found '{value}'"),
                )
            }),
    }
}

/// The regex crate's messages span several lines with a caret diagram; keep
/// the one line that says what is wrong.
fn regex_message(source: &str, e: &regex::Error) -> String {
    let detail = match e {
        regex::Error::CompiledTooBig(_) => "it is too large".to_owned(),
        other => {
            let text = other.to_string();
            text.lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_owned))
                .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_owned())
        }
    };
    format!("invalid regular expression '{source}': {detail}")
}
