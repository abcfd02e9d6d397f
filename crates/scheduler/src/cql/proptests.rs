//! Property tests: printing then parsing gives back the same tree; no input
//! makes the parser panic; the view's column-wise evaluation agrees with
//! per-instance matching.

use proptest::prelude::*;
use regex::Regex;

use super::ast::*;
use super::value::{Version, MAX_TIME, MIN_TIME};
use crate::instance::{Instance, Resources, TaskGroups};
use crate::view::ClusterView;

/// Values chosen to stress quoting: spaces, quotes, backslashes, brackets,
/// commas, operators, keywords, non-ASCII, the empty string.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("and".to_owned()),
        Just("a b".to_owned()),
        Just("say \"hi\"".to_owned()),
        Just("it's".to_owned()),
        Just("back\\slash".to_owned()),
        Just("trailing\\".to_owned()),
        Just("x&&y".to_owned()),
        Just("a||b".to_owned()),
        Just("(a|b)".to_owned()),
        Just("[x]".to_owned()),
        Just("a,b".to_owned()),
        Just("close)".to_owned()),
        Just("]".to_owned()),
        Just("{1,2}".to_owned()),
        Just("prød".to_owned()),
        Just("service:web".to_owned()),
        "[a-z0-9.:@/-]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        Just("t3.*"),
        Just("(t3|m5)\\.large"),
        Just("[mt][35].{1,9}"),
        Just("a b"),
        Just(".*\"q\".*"),
        Just("x\\\\y"),
        Just("service:.*"),
        Just(""),
    ]
    .prop_map(|s| Pattern {
        source: s.to_owned(),
        regex: Regex::new(&format!("^(?:{s})$")).unwrap(),
    })
}

fn attribute_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_./\\\\-]{1,16}"
}

fn comparison() -> impl Strategy<Value = Comparison> {
    prop_oneof![
        Just(Comparison::Eq),
        Just(Comparison::Ne),
        Just(Comparison::Gt),
        Just(Comparison::Ge),
        Just(Comparison::Lt),
        Just(Comparison::Le),
    ]
}

fn equality() -> impl Strategy<Value = Comparison> {
    prop_oneof![Just(Comparison::Eq), Just(Comparison::Ne)]
}

fn text_test() -> impl Strategy<Value = Test> {
    prop_oneof![
        Just(Test::Exists),
        Just(Test::NotExists),
        (equality(), text()).prop_map(|(c, t)| Test::Compare(c, Operand::Text(t))),
        prop::collection::vec(text().prop_map(Operand::Text), 1..4).prop_map(Test::In),
        prop::collection::vec(text().prop_map(Operand::Text), 1..4).prop_map(Test::NotIn),
        pattern().prop_map(Test::Matches),
        pattern().prop_map(Test::NotMatches),
    ]
}

fn predicate() -> impl Strategy<Value = Predicate> {
    let attribute = (
        attribute_name(),
        prop_oneof![
            text_test(),
            (comparison(), text()).prop_map(|(c, t)| Test::Compare(c, Operand::Text(t))),
        ],
    )
        .prop_map(|(n, test)| Predicate {
            subject: Subject::Attribute(n),
            test,
        });
    let ec2 = text_test().prop_map(|test| Predicate {
        subject: Subject::Ec2InstanceId,
        test,
    });
    let group = text_test().prop_map(|test| Predicate {
        subject: Subject::TaskGroup,
        test,
    });
    let connected = prop_oneof![
        Just(Test::Exists),
        (equality(), any::<bool>()).prop_map(|(c, b)| Test::Compare(c, Operand::Bool(b))),
        prop::collection::vec(any::<bool>().prop_map(Operand::Bool), 1..3).prop_map(Test::NotIn),
        pattern().prop_map(Test::Matches),
    ]
    .prop_map(|test| Predicate {
        subject: Subject::AgentConnected,
        test,
    });
    let version =
        (comparison(), prop::collection::vec(any::<u64>(), 1..5)).prop_map(|(c, v)| Predicate {
            subject: Subject::AgentVersion,
            test: Test::Compare(c, Operand::Version(Version(v))),
        });
    let time = (comparison(), MIN_TIME..=MAX_TIME).prop_map(|(c, t)| Predicate {
        subject: Subject::RegisteredAt,
        test: Test::Compare(c, Operand::Time(t)),
    });
    let count = (comparison(), any::<u64>()).prop_map(|(c, n)| Predicate {
        subject: Subject::RunningTasksCount,
        test: Test::Compare(c, Operand::Count(n)),
    });
    prop_oneof![
        attribute,
        ec2,
        group,
        connected,
        version,
        time,
        count,
        Just(Predicate {
            subject: Subject::RegisteredAt,
            test: Test::NotExists
        })
    ]
}

fn expression() -> impl Strategy<Value = Expression> {
    predicate()
        .prop_map(Expression::Predicate)
        .prop_recursive(5, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Expression::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Expression::Or(Box::new(l), Box::new(r))),
                inner.prop_map(|e| Expression::Not(Box::new(e))),
            ]
        })
}

// ----- small domains, so that random expressions often match --------------

fn small_predicate() -> impl Strategy<Value = Predicate> {
    let name =
        prop_oneof![Just("a"), Just("b"), Just("ecs.availability-zone")].prop_map(str::to_owned);
    let value = || {
        prop_oneof![
            Just("x"),
            Just("y"),
            Just("1"),
            Just("10"),
            Just("g1"),
            Just("g2")
        ]
        .prop_map(str::to_owned)
    };
    let small_pattern = prop_oneof![Just("x|1"), Just("g.*"), Just("1.*")].prop_map(|s| Pattern {
        source: s.to_owned(),
        regex: Regex::new(&format!("^(?:{s})$")).unwrap(),
    });
    let test = prop_oneof![
        Just(Test::Exists),
        Just(Test::NotExists),
        (comparison(), value()).prop_map(|(c, v)| Test::Compare(c, Operand::Text(v))),
        prop::collection::vec(value().prop_map(Operand::Text), 1..3).prop_map(Test::In),
        prop::collection::vec(value().prop_map(Operand::Text), 1..3).prop_map(Test::NotIn),
        small_pattern.clone().prop_map(Test::Matches),
        small_pattern.prop_map(Test::NotMatches),
    ];
    let group_test = prop_oneof![
        Just(Test::Exists),
        Just(Test::NotExists),
        (equality(), value()).prop_map(|(c, v)| Test::Compare(c, Operand::Text(v))),
        prop::collection::vec(value().prop_map(Operand::Text), 1..3).prop_map(Test::In),
        prop::collection::vec(value().prop_map(Operand::Text), 1..3).prop_map(Test::NotIn),
    ];
    prop_oneof![
        (name, test).prop_map(|(n, test)| Predicate {
            subject: Subject::Attribute(n),
            test
        }),
        group_test.prop_map(|test| Predicate {
            subject: Subject::TaskGroup,
            test
        }),
        (comparison(), prop::collection::vec(0u64..3, 1..3)).prop_map(|(c, v)| Predicate {
            subject: Subject::AgentVersion,
            test: Test::Compare(c, Operand::Version(Version(v)))
        }),
        (comparison(), 0u64..4).prop_map(|(c, n)| Predicate {
            subject: Subject::RunningTasksCount,
            test: Test::Compare(c, Operand::Count(n))
        }),
        (equality(), any::<bool>()).prop_map(|(c, b)| Predicate {
            subject: Subject::AgentConnected,
            test: Test::Compare(c, Operand::Bool(b))
        }),
    ]
}

fn small_expression() -> impl Strategy<Value = Expression> {
    small_predicate()
        .prop_map(Expression::Predicate)
        .prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Expression::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Expression::Or(Box::new(l), Box::new(r))),
                inner.prop_map(|e| Expression::Not(Box::new(e))),
            ]
        })
}

fn small_instance() -> impl Strategy<Value = (Instance, TaskGroups)> {
    let attr = |name: &'static str| {
        prop::option::of(prop_oneof![
            Just("x"),
            Just("y"),
            Just("1"),
            Just("10"),
            Just("")
        ])
        .prop_map(move |v| (name, v))
    };
    (
        (attr("a"), attr("b"), attr("ecs.availability-zone")),
        prop::option::of(prop_oneof![
            Just("1.0"),
            Just("2.1.0"),
            Just("0.9"),
            Just("junk")
        ]),
        any::<bool>(),
        0u32..4,
        prop::collection::vec(
            (prop_oneof![Just("g1"), Just("g2"), Just("x")], 1u32..3),
            0..3,
        ),
    )
        .prop_map(|((a, b, z), version, connected, running, groups)| {
            let mut i = Instance::new("", Resources::new(1, 1));
            for (name, v) in [a, b, z] {
                if let Some(v) = v {
                    i.attributes.insert(name.to_owned(), v.to_owned());
                }
            }
            i.agent_version = version.map(str::to_owned);
            i.agent_connected = connected;
            i.running_tasks_count = running;
            (i, groups.into_iter().collect())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_is_identity(e in expression()) {
        let printed = e.to_string();
        prop_assume!(printed.chars().count() <= super::MAX_EXPRESSION_CHARS);
        let back = Expression::parse(&printed);
        prop_assert_eq!(back.as_ref(), Ok(&e), "printed: {}", printed);
    }

    #[test]
    fn arbitrary_input_never_panics(s in any::<String>()) {
        if let Ok(e) = Expression::parse(&s) {
            // Whatever parses, prints to something that parses back the same.
            prop_assert_eq!(Expression::parse(&e.to_string()), Ok(e));
        }
    }

    #[test]
    fn token_soup_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("attribute:ecs.availability-zone"), Just("task:group"), Just("agentVersion"), Just("registeredAt"),
        Just("runningTasksCount"), Just("agentConnected"), Just("ec2InstanceId"), Just("=="), Just("!="), Just(">"),
        Just("<="), Just("=~"), Just("!~"), Just("in"), Just("!in"), Just("exists"), Just("!exists"), Just("not"),
        Just("!"), Just("&&"), Just("||"), Just("and"), Just("or"), Just("("), Just(")"), Just("["), Just("]"),
        Just(","), Just("\""), Just("'"), Just("\\"), Just("t3.*"), Just("1.2.3"), Just("2018-06-18"), Just("42"),
        Just("true"), Just("(a|b"), Just(" "),
    ], 0..24)) {
        let s: String = parts.concat();
        if let Ok(e) = Expression::parse(&s) {
            prop_assert_eq!(Expression::parse(&e.to_string()), Ok(e));
        }
        let spaced = parts.join(" ");
        if let Ok(e) = Expression::parse(&spaced) {
            prop_assert_eq!(Expression::parse(&e.to_string()), Ok(e));
        }
    }

    #[test]
    fn column_evaluation_agrees_with_per_instance_matching(
        e in small_expression(),
        hosts in prop::collection::vec(small_instance(), 0..12),
    ) {
        let view = ClusterView::from_instances(hosts.iter().cloned().enumerate().map(|(k, (mut i, g))| {
            i.id = format!("i{k}");
            (i, g)
        }));
        let mask = view.select(&e);
        prop_assert_eq!(mask.len(), hosts.len());
        for (k, (i, g)) in hosts.iter().enumerate() {
            prop_assert_eq!(mask[k], e.matches(i, g), "instance {} for {}", k, e);
        }
    }
}
