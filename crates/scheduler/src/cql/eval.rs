//! Evaluating an expression against one container instance.
//!
//! Semantics, chosen so that negation always means "not":
//! - `!=`, `!in`, `!~` and `!exists` are exactly the negation of `==`, `in`,
//!   `=~` and `exists`: an instance without the attribute matches
//!   `attribute:x != a`.
//! - Ordering operators are false when the subject is missing.
//! - `task:group` is many-valued: `task:group == web` holds if any task on the
//!   instance is in group `web`; `task:group != web` if none is.
//! - Attribute ordering compares numerically when both sides are numbers,
//!   else as strings; `==` compares the text exactly.

use std::cmp::Ordering;

use super::ast::{Comparison, Expression, Operand, Predicate, Subject, Test};
use super::value::Version;
use crate::instance::{Instance, TaskGroups};

impl Expression {
    /// Whether `instance`, with `groups` the task groups on it, satisfies
    /// the expression.
    pub fn matches(&self, instance: &Instance, groups: &TaskGroups) -> bool {
        match self {
            Expression::Or(l, r) => l.matches(instance, groups) || r.matches(instance, groups),
            Expression::And(l, r) => l.matches(instance, groups) && r.matches(instance, groups),
            Expression::Not(e) => !e.matches(instance, groups),
            Expression::Predicate(p) => p.matches(instance, groups),
        }
    }

    /// True if the result can change when tasks are placed or stopped
    /// (`task:group`, `runningTasksCount`), so placement must re-check the
    /// instances it has just used.
    pub fn depends_on_tasks(&self) -> bool {
        match self {
            Expression::Or(l, r) | Expression::And(l, r) => {
                l.depends_on_tasks() || r.depends_on_tasks()
            }
            Expression::Not(e) => e.depends_on_tasks(),
            Expression::Predicate(p) => p.subject.depends_on_tasks(),
        }
    }

    /// Every predicate, left to right.
    pub fn predicates(&self) -> Vec<&Predicate> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Predicate>) {
        match self {
            Expression::Or(l, r) | Expression::And(l, r) => {
                l.collect(out);
                r.collect(out);
            }
            Expression::Not(e) => e.collect(out),
            Expression::Predicate(p) => out.push(p),
        }
    }
}

/// `op` applied to the ordering of subject vs argument, `None` when the
/// subject is missing (only `!=` holds then).
fn holds(op: Comparison, ord: Option<Ordering>) -> bool {
    match ord {
        Some(o) => op.holds(o),
        None => op == Comparison::Ne,
    }
}

fn text_ordering(value: &str, arg: &str, op: Comparison) -> Ordering {
    if op.is_ordering() {
        if let (Ok(a), Ok(b)) = (value.trim().parse::<f64>(), arg.trim().parse::<f64>()) {
            if let Some(o) = a.partial_cmp(&b) {
                return o;
            }
        }
        value.cmp(arg)
    } else if value == arg {
        Ordering::Equal
    } else {
        // Only Eq/Ne look at this; any non-Equal answer will do.
        value.cmp(arg)
    }
}

impl Predicate {
    pub fn matches(&self, instance: &Instance, groups: &TaskGroups) -> bool {
        match &self.subject {
            Subject::Attribute(name) => self.test_text(instance.attribute(name)),
            Subject::Ec2InstanceId => self.test_text(instance.ec2_instance_id.as_deref()),
            Subject::TaskGroup => self.test_groups(groups),
            Subject::AgentConnected => self.test_bool(instance.agent_connected),
            Subject::AgentVersion => self.test_version(
                instance.agent_version.as_deref(),
                instance
                    .agent_version
                    .as_deref()
                    .and_then(Version::parse_lenient)
                    .as_ref(),
            ),
            Subject::RegisteredAt => self.test_ordered(Operand::Time(instance.registered_at)),
            Subject::RunningTasksCount => {
                self.test_ordered(Operand::Count(u64::from(instance.running_tasks_count)))
            }
        }
    }

    /// The test applied to a single text value (attributes, EC2 ids), `None`
    /// when absent. The cluster view evaluates attribute predicates once
    /// per distinct value through this.
    pub(crate) fn test_text(&self, value: Option<&str>) -> bool {
        match &self.test {
            Test::Exists => value.is_some(),
            Test::NotExists => value.is_none(),
            Test::Compare(op, Operand::Text(arg)) => {
                holds(*op, value.map(|v| text_ordering(v, arg, *op)))
            }
            Test::Compare(..) => false,
            Test::In(list) => value.is_some_and(|v| text_in(v, list)),
            Test::NotIn(list) => !value.is_some_and(|v| text_in(v, list)),
            Test::Matches(p) => value.is_some_and(|v| p.is_match(v)),
            Test::NotMatches(p) => !value.is_some_and(|v| p.is_match(v)),
        }
    }

    fn test_groups(&self, groups: &TaskGroups) -> bool {
        let any = |f: &dyn Fn(&str) -> bool| groups.iter().any(|(g, _)| f(g));
        match &self.test {
            Test::Exists => !groups.is_empty(),
            Test::NotExists => groups.is_empty(),
            Test::Compare(Comparison::Eq, Operand::Text(g)) => groups.contains(g),
            Test::Compare(Comparison::Ne, Operand::Text(g)) => !groups.contains(g),
            Test::Compare(..) => false,
            Test::In(list) => list
                .iter()
                .any(|o| matches!(o, Operand::Text(g) if groups.contains(g))),
            Test::NotIn(list) => !list
                .iter()
                .any(|o| matches!(o, Operand::Text(g) if groups.contains(g))),
            Test::Matches(p) => any(&|g| p.is_match(g)),
            Test::NotMatches(p) => !any(&|g| p.is_match(g)),
        }
    }

    fn test_bool(&self, value: bool) -> bool {
        let text = if value { "true" } else { "false" };
        match &self.test {
            Test::Exists => true,
            Test::NotExists => false,
            Test::Compare(op, Operand::Bool(b)) => holds(
                *op,
                Some(if value == *b {
                    Ordering::Equal
                } else {
                    Ordering::Less
                }),
            ),
            Test::Compare(..) => false,
            Test::In(list) => list.contains(&Operand::Bool(value)),
            Test::NotIn(list) => !list.contains(&Operand::Bool(value)),
            Test::Matches(p) => p.is_match(text),
            Test::NotMatches(p) => !p.is_match(text),
        }
    }

    /// `raw` is the version string as reported, `parsed` its numeric reading
    /// (`None` if unreadable, which compares like a missing version).
    pub(crate) fn test_version(&self, raw: Option<&str>, parsed: Option<&Version>) -> bool {
        match &self.test {
            Test::Exists => raw.is_some(),
            Test::NotExists => raw.is_none(),
            Test::Compare(op, Operand::Version(arg)) => holds(*op, parsed.map(|v| v.compare(arg))),
            _ => false,
        }
    }

    fn test_ordered(&self, value: Operand) -> bool {
        match (&self.test, &value) {
            (Test::Exists, _) => true,
            (Test::NotExists, _) => false,
            (Test::Compare(op, Operand::Time(arg)), Operand::Time(v)) => op.holds(v.cmp(arg)),
            (Test::Compare(op, Operand::Count(arg)), Operand::Count(v)) => op.holds(v.cmp(arg)),
            _ => false,
        }
    }
}

fn text_in(value: &str, list: &[Operand]) -> bool {
    list.iter()
        .any(|o| matches!(o, Operand::Text(t) if t == value))
}
