//! The Cluster Query Language: `memberOf` constraints and the
//! ListContainerInstances `filter`.
//!
//! ```
//! use flotilla_scheduler::cql::Expression;
//! use flotilla_scheduler::{Instance, Resources, TaskGroups};
//!
//! let e = Expression::parse("attribute:ecs.instance-type =~ t3.* && not(task:group == database)").unwrap();
//! let host = Instance::new("i-1", Resources::new(2048, 4096)).with_attribute("ecs.instance-type", "t3.large");
//! assert!(e.matches(&host, &TaskGroups::new()));
//! // The canonical form reads back to the same tree.
//! assert_eq!(e.to_string(), "attribute:ecs.instance-type =~ t3.* && !(task:group == database)");
//! ```
//!
//! - [`parse`]: lexer and parser, error positions.
//! - [`ast`]: the tree and its canonical `Display`.
//! - [`eval`]: matching one instance (the cluster view also evaluates whole
//!   columns at once, see [`ClusterView::select`](crate::ClusterView::select)).

pub mod ast;
pub mod eval;
pub mod parse;
pub mod value;

#[cfg(test)]
mod proptests;

pub use ast::{Comparison, Expression, Operand, Pattern, Predicate, Subject, Test};
pub use parse::{ParseError, MAX_EXPRESSION_CHARS, MAX_NESTING};
pub use value::Version;

impl Expression {
    /// Parses an expression of at most 2,000 characters. Regexes are
    /// compiled here, once.
    pub fn parse(input: &str) -> Result<Expression, ParseError> {
        parse::parse(input)
    }
}

impl std::str::FromStr for Expression {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expression::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{Instance, InstanceStatus, Resources, TaskGroups};

    fn host() -> Instance {
        let mut i = Instance::new("arn:ci/1", Resources::new(2048, 4096))
            .with_attribute("ecs.availability-zone", "us-east-1a")
            .with_attribute("ecs.instance-type", "t3.large")
            .with_attribute("ecs.capability.docker-remote-api.1.19", "")
            .with_attribute("stack", "prod")
            .with_attribute("generation", "12")
            .with_attribute("owner", "ops@example.com: team a");
        i.ec2_instance_id = Some("i-0abc123".into());
        i.agent_version = Some("1.82.1".into());
        i.registered_at = 1_529_360_908; // 2018-06-18T22:28:28Z
        i.running_tasks_count = 3;
        i
    }

    fn groups() -> TaskGroups {
        [("service:web", 2), ("family:nginx", 1)]
            .into_iter()
            .collect()
    }

    fn eval(expr: &str) -> bool {
        Expression::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(&host(), &groups())
    }

    fn err(expr: &str) -> ParseError {
        Expression::parse(expr).expect_err(expr)
    }

    #[test]
    fn equality_in_both_spellings() {
        assert!(eval("attribute:ecs.availability-zone == us-east-1a"));
        assert!(eval("attribute:ecs.availability-zone equals us-east-1a"));
        assert!(!eval("attribute:ecs.availability-zone == us-east-1b"));
        assert!(eval("attribute:ecs.availability-zone != us-east-1b"));
        assert!(eval(
            "attribute:ecs.availability-zone not_equals us-east-1b"
        ));
        assert!(eval(
            "attribute:ecs.availability-zone EQUALS \"us-east-1a\""
        ));
        assert!(eval("attribute:owner == 'ops@example.com: team a'"));
    }

    #[test]
    fn missing_attributes_only_match_negations() {
        assert!(!eval("attribute:missing == x"));
        assert!(eval("attribute:missing != x"));
        assert!(!eval("attribute:missing > 1"));
        assert!(!eval("attribute:missing in [a, b]"));
        assert!(eval("attribute:missing !in [a, b]"));
        assert!(eval("attribute:missing not_in [a, b]"));
        assert!(!eval("attribute:missing =~ .*"));
        assert!(eval("attribute:missing !~ .*"));
    }

    #[test]
    fn exists_for_valueless_attributes() {
        assert!(eval(
            "attribute:ecs.capability.docker-remote-api.1.19 exists"
        ));
        assert!(!eval(
            "attribute:ecs.capability.docker-remote-api.1.19 !exists"
        ));
        assert!(!eval(
            "attribute:ecs.capability.docker-remote-api.1.19 not_exists"
        ));
        assert!(eval("attribute:nope !exists"));
        assert!(eval("attribute:nope not_exists"));
        assert!(!eval("attribute:nope exists"));
        assert!(eval("ec2InstanceId exists"));
        assert!(eval(
            "agentConnected exists && registeredAt exists && runningTasksCount exists"
        ));
    }

    #[test]
    fn ordering_on_attributes_is_numeric_when_both_are_numbers() {
        assert!(
            eval("attribute:generation > 9"),
            "12 > 9 numerically, not as text"
        );
        assert!(eval("attribute:generation greater_than_equal 12"));
        assert!(eval("attribute:generation < 100"));
        assert!(eval("attribute:generation less_than 12.5"));
        assert!(eval("attribute:generation <= 12"));
        assert!(eval("attribute:generation less_than_equal 12"));
        assert!(
            eval("attribute:stack > dev"),
            "text compares lexicographically"
        );
        assert!(eval("attribute:generation greater_than 011"));
    }

    #[test]
    fn in_lists() {
        assert!(eval(
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"
        ));
        assert!(eval(
            "attribute:ecs.availability-zone IN [\"us-east-1b\",us-east-1a]"
        ));
        assert!(!eval("attribute:ecs.availability-zone !in [us-east-1a]"));
        assert!(eval("ec2InstanceId in [i-0abc123]"));
        assert!(eval("agentConnected in [true]"));
        assert!(eval("task:group in [service:api, service:web]"));
        assert!(!eval("task:group !in [service:web]"));
    }

    #[test]
    fn regexes_match_the_whole_value() {
        assert!(eval("attribute:ecs.instance-type =~ t3.*"));
        assert!(eval("attribute:ecs.instance-type matches t3\\..*"));
        assert!(
            !eval("attribute:ecs.instance-type =~ t3"),
            "t3 alone must not match t3.large"
        );
        assert!(eval("attribute:ecs.instance-type !~ m5.*"));
        assert!(eval("attribute:ecs.instance-type not_matches m5.*"));
        assert!(eval("attribute:ecs.instance-type =~ \"(t3|m5)\\.large\""));
        assert!(
            eval("attribute:ecs.instance-type =~ (t3|m5)\\.large"),
            "balanced parentheses need no quotes"
        );
        assert!(eval("attribute:ecs.instance-type =~ [mt][35].{1,9}"));
        assert!(eval("not(attribute:ecs.instance-type =~ (m5|c5).*)"));
        assert!(eval("ec2InstanceId =~ i-0.*"));
        assert!(eval("task:group =~ service:.*"));
        assert!(!eval("task:group !~ family:.*"));
        assert!(eval("agentConnected =~ tr.*"));
    }

    #[test]
    fn typed_subjects() {
        assert!(eval("agentConnected == true"));
        assert!(eval("agentConnected != FALSE"));
        assert!(eval("agentVersion >= 1.9.0"), "1.82 > 1.9 component-wise");
        assert!(eval("agentVersion == 1.82.1.0"));
        assert!(eval("agentVersion < v2"));
        assert!(eval("registeredAt == 2018-06-18T22:28:28Z"));
        assert!(eval("registeredAt > 2018-06-18"));
        assert!(eval("registeredAt < 2018-06-18T22:28:29+00:00"));
        assert!(eval("registeredAt >= 1529360908"));
        assert!(eval(
            "runningTasksCount == 3 && runningTasksCount > 2 && runningTasksCount <= 3"
        ));
        assert!(eval("task:group == service:web"));
        assert!(eval("task:group != service:api"));
        assert!(eval("task:group exists"));
        let mut lonely = host();
        lonely.agent_version = Some("nonsense".into());
        let e = Expression::parse("agentVersion > 0").unwrap();
        assert!(
            !e.matches(&lonely, &TaskGroups::new()),
            "an unreadable version compares like a missing one"
        );
        assert!(!Expression::parse("task:group exists")
            .unwrap()
            .matches(&lonely, &TaskGroups::new()));
        lonely.status = InstanceStatus::Draining;
    }

    #[test]
    fn boolean_combinators_and_precedence() {
        assert!(eval(
            "attribute:stack == prod && attribute:generation == 12"
        ));
        assert!(eval(
            "attribute:stack == prod and attribute:generation == 12"
        ));
        assert!(eval("attribute:stack == dev || attribute:generation == 12"));
        assert!(eval("attribute:stack == dev OR attribute:generation == 12"));
        assert!(eval("!(attribute:stack == dev)"));
        assert!(eval("not(task:group == database)"));
        assert!(eval("not attribute:stack == dev"));
        assert!(!eval("not not attribute:stack == dev"));
        // && binds tighter than ||: true || (false && false).
        assert!(eval(
            "attribute:stack == prod || attribute:stack == dev && attribute:stack == x"
        ));
        assert!(!eval(
            "(attribute:stack == prod || attribute:stack == dev) && attribute:stack == x"
        ));
        // No spaces needed around && / ||.
        assert!(eval("task:group==service:web&&attribute:stack==prod"));
    }

    #[test]
    fn canonical_printing() {
        let cases = [
            (
                "attribute:a == b and (attribute:c == d or attribute:e exists)",
                "attribute:a == b && (attribute:c == d || attribute:e exists)",
            ),
            (
                "not(task:group equals database)",
                "!(task:group == database)",
            ),
            ("attribute:x in ['a b', c]", "attribute:x in [\"a b\", c]"),
            (
                "registeredAt > 2018-06-18T22:28:28+02:00",
                "registeredAt > 2018-06-18T20:28:28Z",
            ),
            ("agentConnected == TRUE", "agentConnected == true"),
            ("attribute:x not_exists", "attribute:x !exists"),
            ("a_b_c", ""),
        ];
        for (input, want) in cases {
            match Expression::parse(input) {
                Ok(e) => assert_eq!(e.to_string(), want, "{input}"),
                Err(_) => assert!(want.is_empty(), "{input} should parse"),
            }
        }
        let e = Expression::parse(r#"attribute:x == "say \"hi\" \\ \d""#).unwrap();
        assert_eq!(e.to_string(), r#"attribute:x == "say \"hi\" \\ \\d""#);
        assert_eq!(Expression::parse(&e.to_string()).unwrap(), e);
    }

    #[test]
    fn errors_name_the_position_and_what_was_expected() {
        let e = err("attribute:ecs.instance-type");
        assert_eq!(
            e.to_string(),
            "expected an operator after 'attribute:ecs.instance-type' at position 28"
        );
        let e = err("attribute:ecs.instance-type t3.large");
        assert_eq!(e.position, 29);
        let e = err("attribute:x ==");
        assert_eq!(
            e.to_string(),
            "expected a value after '==', found end of expression at position 15"
        );
        let e = err("flavour == x");
        assert!(e.message.starts_with("unknown subject 'flavour'"), "{e}");
        assert_eq!(e.position, 1);
        let e = err("runningTasksCount > ten");
        assert_eq!(
            e.to_string(),
            "expected a whole number for runningTasksCount, found 'ten' at position 21"
        );
        let e = err("agentConnected > true");
        assert!(e.message.contains("not valid for agentConnected"), "{e}");
        assert_eq!(e.position, 16);
        assert!(err("agentVersion =~ 1.*")
            .message
            .contains("not valid for agentVersion"));
        assert!(err("task:group >= a")
            .message
            .contains("not valid for task:group"));
        assert!(err("agentVersion > one")
            .message
            .contains("expected a version"));
        assert!(err("registeredAt > yesterday")
            .message
            .contains("expected a date"));
        assert!(err("agentConnected == maybe")
            .message
            .contains("true or false"));
        let e = err("attribute:x =~ \"t3.(\"");
        assert!(
            e.message.starts_with("invalid regular expression 't3.(': "),
            "{e}"
        );
        assert_eq!(e.position, 16);
        let e = err("attribute:x =~ t3.(");
        assert!(
            e.message.starts_with("invalid regular expression 't3.(': "),
            "{e}"
        );
        let e = err("attribute:x in a, b");
        assert!(e.message.starts_with("expected '[' to start a list"), "{e}");
        let e = err("attribute:x in [a b]");
        assert_eq!(e.position, 19);
        let e = err("attribute:x in []");
        assert!(e.message.starts_with("expected a value"), "{e}");
        let e = err("(attribute:x exists");
        assert!(
            e.message
                .starts_with("expected ')' to close the '(' at position 1"),
            "{e}"
        );
        let e = err("attribute:x exists attribute:y exists");
        assert!(e.message.contains("expected &&, ||, or the end"), "{e}");
        assert_eq!(e.position, 20);
        let e = err("attribute:x == 'open");
        assert!(e.message.starts_with("unterminated string"), "{e}");
        assert_eq!(err("").position, 1);
        assert_eq!(err("   ").position, 4);
        assert!(err("attribute: == x")
            .message
            .contains("expected an attribute name"));
        assert!(err("attribute:a:b == x")
            .message
            .contains("':' is not allowed"));
        assert!(err(&format!("attribute:{} exists", "n".repeat(129)))
            .message
            .contains("longer than 128"));
        assert!(err("attribute:x = y")
            .message
            .starts_with("expected an operator"));
        assert!(err("attribute:x == a &&")
            .message
            .starts_with("expected a subject"));
        assert!(err("attribute:x == a ) ")
            .message
            .contains("unexpected ')'"));
        assert!(err("! ").message.starts_with("expected a subject"));
        assert!(err("attribute:x !foo")
            .message
            .starts_with("expected an operator"));
    }

    #[test]
    fn limits_protect_the_parser() {
        let long = format!("attribute:x == {}", "a".repeat(MAX_EXPRESSION_CHARS));
        let e = err(&long);
        assert!(e.message.contains("at most 2000"), "{e}");
        let exactly = format!("attribute:x == {}", "a".repeat(MAX_EXPRESSION_CHARS - 15));
        assert!(Expression::parse(&exactly).is_ok());
        let deep = format!(
            "{}attribute:x exists{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert!(err(&deep).message.contains("nests too deeply"));
        let ok = format!(
            "{}attribute:x exists{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert!(Expression::parse(&ok).is_ok());
        let nots = format!("{}attribute:x exists", "!".repeat(1000));
        assert!(err(&nots).message.contains("nests too deeply"));
        // A long flat chain is fine and evaluates without deep recursion trouble.
        let chain = vec!["attribute:x exists"; 90].join(" || ");
        assert!(!Expression::parse(&chain)
            .unwrap()
            .matches(&host(), &groups()));
        let e = err("attribute:x =~ \"a{1000}{1000}\"");
        assert!(e.message.starts_with("invalid regular expression"), "{e}");
    }

    #[test]
    fn non_ascii_input_reports_character_positions() {
        let e = err("attribute:é == x");
        assert_eq!(e.position, 11);
        assert!(eval("attribute:stack != \"prød\""));
        let e = err("attribute:x == 'ü");
        assert_eq!(e.position, 16);
    }

    #[test]
    fn dependence_on_tasks() {
        let dynamic = |s: &str| Expression::parse(s).unwrap().depends_on_tasks();
        assert!(dynamic("attribute:a exists || not(task:group == db)"));
        assert!(dynamic("runningTasksCount < 5"));
        assert!(!dynamic(
            "attribute:a exists && agentConnected == true && registeredAt > 0"
        ));
    }
}
