//! The syntax tree of a Cluster Query Language expression, and its canonical
//! printed form.
//!
//! The printer's one job is `parse(print(e)) == e`: it parenthesises exactly
//! where the parser's precedence (`!` over `&&` over `||`, left-associative)
//! would otherwise regroup, uses the symbolic operators, and quotes a value
//! only when a bare word would not read back the same.

use std::fmt;

use regex::Regex;

use super::value::{format_time, Version};

/// A parsed expression. Build one with [`Expression::parse`].
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    Or(Box<Expression>, Box<Expression>),
    And(Box<Expression>, Box<Expression>),
    Not(Box<Expression>),
    Predicate(Predicate),
}

/// `subject operator [argument]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub subject: Subject,
    pub test: Test,
}

/// What a predicate looks at on a container instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    AgentConnected,
    AgentVersion,
    /// `attribute:<name>`; the name follows ECS attribute-name rules
    /// (letters, digits, `-`, `_`, `.`, `/`, `\`, at most 128).
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    /// `task:group`: the groups of the tasks on the instance (many-valued).
    TaskGroup,
}

impl Subject {
    /// True for subjects whose value changes when a task is placed on or
    /// stopped from the instance; placement re-evaluates those as it goes.
    pub fn depends_on_tasks(&self) -> bool {
        matches!(self, Subject::RunningTasksCount | Subject::TaskGroup)
    }
}

/// The operator and its argument, already converted to the subject's type
/// (so `runningTasksCount > ten` is a parse error, not a silent `false`).
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Exists,
    NotExists,
    Compare(Comparison, Operand),
    In(Vec<Operand>),
    NotIn(Vec<Operand>),
    Matches(Pattern),
    NotMatches(Pattern),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Comparison {
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
        }
    }

    pub(crate) fn is_ordering(self) -> bool {
        !matches!(self, Comparison::Eq | Comparison::Ne)
    }

    /// Whether `ord` (subject compared with argument) satisfies the operator.
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Comparison::Eq => ord == Equal,
            Comparison::Ne => ord != Equal,
            Comparison::Gt => ord == Greater,
            Comparison::Ge => ord != Less,
            Comparison::Lt => ord == Less,
            Comparison::Le => ord != Greater,
        }
    }
}

/// An argument, typed by the subject it is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operand {
    /// Attributes, `ec2InstanceId`, `task:group`.
    Text(String),
    /// `agentConnected`.
    Bool(bool),
    /// `agentVersion`: numeric per component.
    Version(Version),
    /// `registeredAt`: epoch seconds.
    Time(i64),
    /// `runningTasksCount`.
    Count(u64),
}

/// A regular expression for `=~`/`!~`, compiled once at parse time. It must
/// match the whole value (`t3.*` matches `t3.large`, `t3` does not), as a
/// Java `String.matches` would.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub(crate) source: String,
    pub(crate) regex: Regex,
}

impl Pattern {
    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

// ----- printing -------------------------------------------------------------

/// Binding strength, for deciding where the printer needs parentheses.
fn precedence(e: &Expression) -> u8 {
    match e {
        Expression::Or(..) => 1,
        Expression::And(..) => 2,
        Expression::Not(_) | Expression::Predicate(_) => 3,
    }
}

fn write_child(f: &mut fmt::Formatter<'_>, e: &Expression, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Left-associative: a right operand of the same operator needs
            // parentheses to keep its shape.
            Expression::Or(l, r) => {
                write_child(f, l, precedence(l) < 1)?;
                f.write_str(" || ")?;
                write_child(f, r, precedence(r) <= 1)
            }
            Expression::And(l, r) => {
                write_child(f, l, precedence(l) < 2)?;
                f.write_str(" && ")?;
                write_child(f, r, precedence(r) <= 2)
            }
            Expression::Not(inner) => write!(f, "!({inner})"),
            Expression::Predicate(p) => write!(f, "{p}"),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Attribute(name) => write!(f, "attribute:{name}"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.subject)?;
        match &self.test {
            Test::Exists => f.write_str("exists"),
            Test::NotExists => f.write_str("!exists"),
            Test::Compare(op, v) => write!(f, "{} {v}", op.symbol()),
            Test::In(vs) => write!(f, "in {}", List(vs)),
            Test::NotIn(vs) => write!(f, "!in {}", List(vs)),
            Test::Matches(p) => write!(f, "=~ {}", Word(&p.source)),
            Test::NotMatches(p) => write!(f, "!~ {}", Word(&p.source)),
        }
    }
}

struct List<'a>(&'a [Operand]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Text(s) => write!(f, "{}", Word(s)),
            Operand::Bool(b) => write!(f, "{b}"),
            Operand::Version(v) => write!(f, "{v}"),
            Operand::Time(t) => f.write_str(&format_time(*t)),
            Operand::Count(n) => write!(f, "{n}"),
        }
    }
}

/// A value as a bare word when it reads back unchanged, else double-quoted
/// with `"` and `\` escaped.
struct Word<'a>(&'a str);

impl fmt::Display for Word<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_bare_word(self.0) {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// How many characters at the start of `chars` form one unquoted value.
///
/// A bare value runs to whitespace, a quote, `&&`, `||`, or a `,`, `)` or
/// `]` that closes nothing inside the value: brackets, parentheses and
/// braces inside it must balance, so regexes such as `(t3|m5).*` and
/// `m[45]\.large` need no quotes while `not(task:group == db)` still ends
/// the value at its closing parenthesis. The parser and the printer share
/// this, so what the printer leaves bare reads back the same.
///
/// Also says whether every opener was closed: a word ending inside an open
/// `{` or `(` would swallow a following `,` or `)` in context, so the printer
/// only leaves balanced words bare.
pub(crate) fn bare_word_len(chars: &[char]) -> (usize, bool) {
    let (mut parens, mut brackets, mut braces) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c.is_whitespace()
            || c == '"'
            || c == '\''
            || (c == '&' && next == Some('&'))
            || (c == '|' && next == Some('|'))
        {
            break;
        }
        match c {
            '(' => parens += 1,
            '[' => brackets += 1,
            '{' => braces += 1,
            ')' if parens == 0 => break,
            ']' if brackets == 0 => break,
            ')' => parens -= 1,
            ']' => brackets -= 1,
            '}' => braces = braces.saturating_sub(1),
            ',' if parens == 0 && brackets == 0 && braces == 0 => break,
            _ => {}
        }
        i += 1;
    }
    (i, parens == 0 && brackets == 0 && braces == 0)
}

pub(crate) fn is_bare_word(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    !chars.is_empty() && bare_word_len(&chars) == (chars.len(), true)
}
