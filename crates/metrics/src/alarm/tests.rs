//! The evaluator against CloudWatch's documented behaviour, and
//! PutMetricAlarm's validation.

use super::evaluate::{evaluate, Evaluation, Outcome, Slot};
use super::*;
use crate::query::MetricStat;

fn scope() -> Scope {
    Scope::new("111122223333", "us-east-1")
}

/// 2026-06-12T10:00:00Z.
fn t0() -> Timestamp {
    Timestamp::from_secs(1_781_258_400)
}

fn input() -> PutMetricAlarmInput {
    PutMetricAlarmInput {
        alarm_name: "cpu-high".into(),
        metric_name: Some("CPUUtilization".into()),
        namespace: Some("AWS/ECS".into()),
        statistic: Some(Statistic::Average),
        dimensions: vec![Dimension::new("ClusterName", "prod")],
        period: Some(60),
        evaluation_periods: Some(3),
        threshold: Some(5.0),
        comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
        ..Default::default()
    }
}

fn alarm_with(n: i64, m: i64, mode: TreatMissingData, state: StateValue) -> MetricAlarm {
    let mut i = input();
    i.evaluation_periods = Some(n);
    i.datapoints_to_alarm = Some(m);
    i.treat_missing_data = Some(mode.as_str().into());
    let mut a = validate_put(&scope(), &i, t0()).unwrap();
    a.state_value = state;
    a
}

/// "0 - X - X": 0 is below the threshold (5), X above, - missing; the
/// newest datapoint is on the right. Periods of 60 s ending at t0 + 10 min.
fn slots(pattern: &str) -> Vec<Slot> {
    let marks: Vec<&str> = pattern.split_whitespace().collect();
    let end = t0().plus_secs(600);
    let n = marks.len() as i64;
    marks
        .iter()
        .enumerate()
        .map(|(i, m)| Slot {
            start: end.minus_secs(60 * (n - i as i64)),
            value: match *m {
                "0" => Some(0.0),
                "X" => Some(10.0),
                "-" => None,
                other => panic!("bad mark {other}"),
            },
            sample_count: 1.0,
        })
        .collect()
}

fn state_of(e: &Evaluation) -> Option<StateValue> {
    match e {
        Evaluation::Keep => None,
        Evaluation::Set(o) => Some(o.state),
    }
}

fn outcome(e: Evaluation) -> Outcome {
    match e {
        Evaluation::Set(o) => o,
        Evaluation::Keep => panic!("kept the state"),
    }
}

const MODES: [TreatMissingData; 4] = [
    TreatMissingData::Missing,
    TreatMissingData::Ignore,
    TreatMissingData::Breaching,
    TreatMissingData::NotBreaching,
];

/// Checks one table of "How alarm state is evaluated when data is missing":
/// per row, the result for MISSING, IGNORE, BREACHING, NOT BREACHING
/// (`None`: the alarm keeps its current state). The alarm starts OK and
/// INSUFFICIENT_DATA: "keep" must hold from both.
fn check_table(n: i64, m: i64, rows: &[(&str, [Option<StateValue>; 4])]) {
    use StateValue::*;
    for (pattern, expected) in rows {
        for (mode, want) in MODES.iter().zip(expected) {
            for current in [Ok, InsufficientData] {
                let alarm = alarm_with(n, m, *mode, current);
                let got = state_of(&evaluate(&alarm, &slots(pattern), t0()));
                assert_eq!(
                    got, *want,
                    "{m} of {n}, [{pattern}], {mode}, from {current}"
                );
            }
        }
    }
}

#[test]
fn the_documented_3_out_of_3_table() {
    use StateValue::*;
    check_table(
        3,
        3,
        &[
            ("0 - X - X", [Some(Ok), Some(Ok), Some(Ok), Some(Ok)]),
            ("- - - - 0", [Some(Ok), Some(Ok), Some(Ok), Some(Ok)]),
            (
                "- - - - -",
                [Some(InsufficientData), None, Some(Alarm), Some(Ok)],
            ),
            (
                "0 X X - X",
                [Some(Alarm), Some(Alarm), Some(Alarm), Some(Alarm)],
            ),
            ("- - X - -", [Some(Alarm), None, Some(Alarm), Some(Ok)]),
        ],
    );
}

#[test]
fn the_documented_2_out_of_3_table() {
    use StateValue::*;
    check_table(
        3,
        2,
        &[
            (
                "0 - X - X",
                [Some(Alarm), Some(Alarm), Some(Alarm), Some(Alarm)],
            ),
            (
                "0 0 X 0 X",
                [Some(Alarm), Some(Alarm), Some(Alarm), Some(Alarm)],
            ),
            ("0 - X - -", [Some(Ok), Some(Ok), Some(Alarm), Some(Ok)]),
            ("- - - - 0", [Some(Ok), Some(Ok), Some(Alarm), Some(Ok)]),
            ("- - - X -", [Some(Alarm), None, Some(Alarm), Some(Ok)]),
        ],
    );
}

#[test]
fn a_lone_recent_breach_does_not_alarm_prematurely() {
    // "the alarm does not go immediately into ALARM state when the data is
    // either - - - - X or - - - X - and Datapoints to Alarm is 3".
    for pattern in ["- - - - X", "- - - X -"] {
        let alarm = alarm_with(3, 3, TreatMissingData::Missing, StateValue::Ok);
        assert_eq!(
            evaluate(&alarm, &slots(pattern), t0()),
            Evaluation::Keep,
            "{pattern}"
        );
    }
    let alarm = alarm_with(3, 3, TreatMissingData::Missing, StateValue::Ok);
    assert_eq!(
        state_of(&evaluate(&alarm, &slots("- - X - -"), t0())),
        Some(StateValue::Alarm)
    );
}

#[test]
fn m_out_of_n_counts_breaching_datapoints_among_the_newest_n() {
    use StateValue::*;
    let cases = [
        ("0 0 X X X", 3, Alarm),
        ("0 0 X 0 X", 3, Ok),
        ("X 0 X 0 X 0 0", 3, Ok), // only the newest 5 count: X 0 X 0 0
        ("0 0 X 0 X X 0", 3, Alarm),
        ("0 0 0 0 X", 1, Alarm),
        ("X X X X 0", 5, Ok),
    ];
    for (pattern, m, want) in cases {
        let alarm = alarm_with(5, m, TreatMissingData::Missing, InsufficientData);
        assert_eq!(
            state_of(&evaluate(&alarm, &slots(pattern), t0())),
            Some(want),
            "{m} of 5: {pattern}"
        );
    }
}

#[test]
fn every_comparison_operator() {
    use ComparisonOperator::*;
    // (operator, value, expected ALARM) with threshold 5.
    let cases = [
        (GreaterThanOrEqualToThreshold, 5.0, true),
        (GreaterThanOrEqualToThreshold, 4.9, false),
        (GreaterThanThreshold, 5.0, false),
        (GreaterThanThreshold, 5.1, true),
        (LessThanThreshold, 4.9, true),
        (LessThanThreshold, 5.0, false),
        (LessThanOrEqualToThreshold, 5.0, true),
        (LessThanOrEqualToThreshold, 5.1, false),
    ];
    for (op, value, alarms) in cases {
        let mut i = input();
        i.evaluation_periods = Some(1);
        i.comparison_operator = Some(op);
        let alarm = validate_put(&scope(), &i, t0()).unwrap();
        let slot = Slot {
            start: t0(),
            value: Some(value),
            sample_count: 1.0,
        };
        let want = if alarms {
            StateValue::Alarm
        } else {
            StateValue::Ok
        };
        let rest = [
            Slot {
                value: None,
                ..slot
            },
            Slot {
                value: None,
                ..slot
            },
        ];
        let range = [rest[0], rest[1], slot];
        assert_eq!(
            state_of(&evaluate(&alarm, &range, t0())),
            Some(want),
            "{op} {value}"
        );
    }
}

#[test]
fn with_no_data_each_missing_data_mode_words_its_reason() {
    let cases = [
        (TreatMissingData::Missing, Some(StateValue::InsufficientData), "Insufficient Data: 1 datapoint was unknown."),
        (
            TreatMissingData::Breaching,
            Some(StateValue::Alarm),
            "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as [Breaching].",
        ),
        (
            TreatMissingData::NotBreaching,
            Some(StateValue::Ok),
            "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as [NonBreaching].",
        ),
        (TreatMissingData::Ignore, None, ""),
    ];
    for (mode, want, text) in cases {
        let alarm = alarm_with(1, 1, mode, StateValue::Ok);
        let e = evaluate(&alarm, &slots("- - -"), t0());
        assert_eq!(state_of(&e), want, "{mode}");
        if let Evaluation::Set(o) = e {
            assert_eq!(o.reason, text);
        }
    }
    let alarm = alarm_with(3, 3, TreatMissingData::Missing, StateValue::Ok);
    let o = outcome(evaluate(&alarm, &slots("- - - - -"), t0()));
    assert_eq!(o.reason, "Insufficient Data: 3 datapoints were unknown.");
}

#[test]
fn reasons_are_worded_as_cloudwatch_words_them() {
    let mut i = input();
    i.threshold = Some(80.0);
    i.comparison_operator = Some(ComparisonOperator::GreaterThanOrEqualToThreshold);
    let mut alarm = validate_put(&scope(), &i, t0()).unwrap();
    alarm.state_value = StateValue::Ok;
    let at = t0().plus_secs(240); // 10:04: periods 09:59 .. 10:03
    let values = [None, Some(70.0), Some(81.0), Some(90.0), Some(85.0)];
    let range: Vec<Slot> = values
        .iter()
        .enumerate()
        .map(|(k, v)| Slot {
            start: at.minus_secs(60 * (5 - k as i64)),
            value: *v,
            sample_count: 2.0,
        })
        .collect();
    let o = outcome(evaluate(&alarm, &range, at));
    assert_eq!(o.state, StateValue::Alarm);
    assert_eq!(
        o.reason,
        "Threshold Crossed: 3 out of the last 3 datapoints [85.0 (12/06/26 10:03:00), 90.0 (12/06/26 10:02:00), 81.0 (12/06/26 10:01:00)] were greater than or equal to the threshold (80.0) (minimum 3 datapoints for OK -> ALARM transition)."
    );

    // Back to OK: one of two datapoints below (2 of 2 to alarm).
    i.evaluation_periods = Some(2);
    i.threshold = Some(1.0);
    let mut alarm = validate_put(&scope(), &i, t0()).unwrap();
    alarm.state_value = StateValue::Alarm;
    let values = [None, None, Some(2.0), Some(0.0)];
    let range: Vec<Slot> = values
        .iter()
        .enumerate()
        .map(|(k, v)| Slot {
            start: at.minus_secs(60 * (4 - k as i64)),
            value: *v,
            sample_count: 1.0,
        })
        .collect();
    let o = outcome(evaluate(&alarm, &range, at));
    assert_eq!(o.state, StateValue::Ok);
    assert_eq!(
        o.reason,
        "Threshold Crossed: 1 out of the last 2 datapoints [0.0 (12/06/26 10:03:00)] was not greater than or equal to the threshold (1.0) (minimum 1 datapoint for ALARM -> OK transition)."
    );

    // One evaluation period: "1 datapoint [...] was ...".
    i.evaluation_periods = Some(1);
    let alarm = validate_put(&scope(), &i, t0()).unwrap();
    let o = outcome(evaluate(&alarm, &range, at));
    assert_eq!(o.reason, "Threshold Crossed: 1 datapoint [0.0 (12/06/26 10:03:00)] was not greater than or equal to the threshold (1.0).");
}

#[test]
fn missing_datapoints_filled_as_breaching_are_named_in_the_reason() {
    let alarm = alarm_with(3, 3, TreatMissingData::Breaching, StateValue::Ok);
    let o = outcome(evaluate(&alarm, &slots("- - X - -"), t0()));
    assert_eq!(o.state, StateValue::Alarm);
    assert_eq!(
        o.reason,
        "Threshold Crossed: 1 out of the last 3 datapoints [10.0 (12/06/26 10:07:00)] was greater than the threshold (5.0) and 2 missing datapoints were treated as [Breaching] (minimum 3 datapoints for OK -> ALARM transition)."
    );
}

#[test]
fn a_breach_made_of_missing_datapoints_says_so() {
    // 2 of 3, "- - - - 0" with missing data breaching: ALARM on the two
    // missing periods alone.
    let alarm = alarm_with(3, 2, TreatMissingData::Breaching, StateValue::Ok);
    let o = outcome(evaluate(&alarm, &slots("- - - - 0"), t0()));
    assert_eq!(o.state, StateValue::Alarm);
    assert_eq!(
        o.reason,
        "Threshold Crossed: 2 missing datapoints were treated as [Breaching]."
    );
}

#[test]
fn state_reason_data_is_cloudwatch_json() {
    let alarm = alarm_with(3, 3, TreatMissingData::Missing, StateValue::Ok);
    let o = outcome(evaluate(&alarm, &slots("0 X - X X"), t0().plus_secs(600)));
    let data: serde_json::Value = serde_json::from_str(&o.reason_data).unwrap();
    assert_eq!(data["version"], "1.0");
    assert_eq!(data["queryDate"], "2026-06-12T10:10:00.000+0000");
    // The newest 3 real datapoints span 4 periods: 10:06 .. 10:09.
    assert_eq!(data["startDate"], "2026-06-12T10:06:00.000+0000");
    assert_eq!(data["statistic"], "Average");
    assert_eq!(data["period"], 60);
    assert_eq!(data["threshold"], 5.0);
    assert_eq!(
        data["recentDatapoints"],
        serde_json::json!([10.0, 10.0, 10.0])
    );
    let evaluated = data["evaluatedDatapoints"].as_array().unwrap();
    assert_eq!(evaluated.len(), 4);
    assert_eq!(evaluated[0]["timestamp"], "2026-06-12T10:09:00.000+0000");
    assert_eq!(evaluated[0]["value"], 10.0);
    assert_eq!(evaluated[0]["sampleCount"], 1.0);
    assert_eq!(
        evaluated[2],
        serde_json::json!({"timestamp": "2026-06-12T10:07:00.000+0000"})
    );
    assert!(data.get("unit").is_none());
    assert_eq!(o.recent, vec![10.0, 10.0, 10.0]);
}

#[test]
fn low_sample_percentiles_can_be_ignored() {
    let mut i = input();
    i.statistic = None;
    i.extended_statistic = Some("p99".into());
    i.evaluation_periods = Some(1);
    i.evaluate_low_sample_count_percentile = Some("ignore".into());
    let alarm = validate_put(&scope(), &i, t0()).unwrap();
    // p99 needs 10 / (1 - 0.99) = 1000 samples.
    let few = [Slot {
        start: t0(),
        value: Some(10.0),
        sample_count: 999.0,
    }];
    assert_eq!(evaluate(&alarm, &few, t0()), Evaluation::Keep);
    let enough = [Slot {
        start: t0(),
        value: Some(10.0),
        sample_count: 1000.0,
    }];
    assert_eq!(
        state_of(&evaluate(&alarm, &enough, t0())),
        Some(StateValue::Alarm)
    );
    i.evaluate_low_sample_count_percentile = Some("evaluate".into());
    let alarm = validate_put(&scope(), &i, t0()).unwrap();
    assert_eq!(
        state_of(&evaluate(&alarm, &few, t0())),
        Some(StateValue::Alarm)
    );
}

#[test]
fn put_metric_alarm_validation() {
    let ok = validate_put(&scope(), &input(), t0()).unwrap();
    assert_eq!(
        ok.alarm_arn,
        "arn:aws:cloudwatch:us-east-1:111122223333:alarm:cpu-high"
    );
    assert_eq!(ok.state_value, StateValue::InsufficientData);
    assert_eq!(ok.state_reason, "Unchecked: Initial alarm creation");
    assert!(ok.actions_enabled);

    let check = |f: &dyn Fn(&mut PutMetricAlarmInput), code: &str, needle: &str| {
        let mut i = input();
        f(&mut i);
        let err = validate_put(&scope(), &i, t0()).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    };
    check(&|i| i.period = Some(45), "InvalidParameterValue", "Period");
    check(&|i| i.period = Some(0), "InvalidParameterValue", "Period");
    check(&|i| i.period = None, "MissingParameter", "Period");
    check(
        &|i| i.evaluation_periods = Some(1441),
        "InvalidParameterCombination",
        "86400",
    );
    check(
        &|i| {
            i.period = Some(3600);
            i.evaluation_periods = Some(169);
        },
        "InvalidParameterCombination",
        "604800",
    );
    check(
        &|i| i.datapoints_to_alarm = Some(4),
        "InvalidParameterValue",
        "DatapointsToAlarm",
    );
    check(
        &|i| i.datapoints_to_alarm = Some(0),
        "InvalidParameterValue",
        "DatapointsToAlarm",
    );
    check(
        &|i| i.extended_statistic = Some("p99".into()),
        "InvalidParameterCombination",
        "ExtendedStatistic",
    );
    check(&|i| i.statistic = None, "MissingParameter", "Statistic");
    check(
        &|i| {
            i.statistic = None;
            i.extended_statistic = Some("p101".into());
        },
        "InvalidParameterValue",
        "ExtendedStatistic",
    );
    check(
        &|i| i.comparison_operator = Some(ComparisonOperator::LessThanLowerThreshold),
        "InvalidParameterCombination",
        "anomaly detection",
    );
    check(
        &|i| i.comparison_operator = None,
        "MissingParameter",
        "ComparisonOperator",
    );
    check(&|i| i.threshold = None, "MissingParameter", "Threshold");
    check(
        &|i| i.treat_missing_data = Some("sometimes".into()),
        "InvalidParameterValue",
        "TreatMissingData",
    );
    check(
        &|i| i.evaluate_low_sample_count_percentile = Some("maybe".into()),
        "InvalidParameterValue",
        "EvaluateLowSampleCountPercentile",
    );
    check(
        &|i| i.alarm_actions = vec!["arn:aws:sns:us-east-1:1:t".into(); 6],
        "InvalidParameterValue",
        "AlarmActions",
    );
    check(
        &|i| i.ok_actions = vec!["not-an-arn".into()],
        "InvalidParameterValue",
        "OKActions.member.1",
    );
    check(
        &|i| i.alarm_name = String::new(),
        "MissingParameter",
        "AlarmName",
    );
    check(
        &|i| i.alarm_name = "a\u{7}b".into(),
        "InvalidParameterValue",
        "AlarmName",
    );
    check(
        &|i| i.threshold_metric_id = Some("ad1".into()),
        "InvalidParameterCombination",
        "ThresholdMetricId",
    );
    check(
        &|i| {
            i.tags = (0..51)
                .map(|k| Tag {
                    key: format!("k{k}"),
                    value: String::new(),
                })
                .collect()
        },
        "InvalidParameterValue",
        "Tags",
    );
    check(&|i| i.metric_name = None, "MissingParameter", "MetricName");
    for period in [10, 20, 30, 60, 300, 86_400] {
        let mut i = input();
        i.period = Some(period);
        i.evaluation_periods = Some(1);
        assert!(validate_put(&scope(), &i, t0()).is_ok(), "{period}");
    }
}

fn math_input() -> PutMetricAlarmInput {
    let metric = |id: &str, name: &str| MetricDataQuery {
        id: id.into(),
        metric_stat: Some(MetricStat {
            namespace: "App".into(),
            metric_name: name.into(),
            dimensions: vec![],
            period: 60,
            stat: "Sum".into(),
            unit: None,
        }),
        return_data: Some(false),
        ..Default::default()
    };
    PutMetricAlarmInput {
        alarm_name: "error-rate".into(),
        metrics: vec![
            metric("errors", "Errors"),
            metric("requests", "Requests"),
            MetricDataQuery {
                id: "rate".into(),
                expression: Some("100 * errors / requests".into()),
                return_data: Some(true),
                ..Default::default()
            },
        ],
        evaluation_periods: Some(2),
        threshold: Some(5.0),
        comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
        ..Default::default()
    }
}

#[test]
fn math_alarms_are_validated() {
    let alarm = validate_put(&scope(), &math_input(), t0()).unwrap();
    assert_eq!(alarm.period_secs(), 60);
    assert_eq!(alarm.period, None);

    let mut two = math_input();
    two.metrics[0].return_data = Some(true);
    let err = validate_put(&scope(), &two, t0()).unwrap_err();
    assert!(err.to_string().contains("ReturnData"), "{err}");

    let mut mixed = math_input();
    mixed.namespace = Some("App".into());
    assert_eq!(
        validate_put(&scope(), &mixed, t0()).unwrap_err().code(),
        "InvalidParameterCombination"
    );

    let mut both = math_input();
    both.metric_name = Some("Errors".into());
    assert_eq!(
        validate_put(&scope(), &both, t0()).unwrap_err().code(),
        "InvalidParameterCombination"
    );

    let mut periods = math_input();
    if let Some(ms) = periods.metrics[1].metric_stat.as_mut() {
        ms.period = 120;
    }
    assert!(validate_put(&scope(), &periods, t0())
        .unwrap_err()
        .to_string()
        .contains("same Period"));

    let mut bad = math_input();
    bad.metrics[2].expression = Some("100 * errors / nope".into());
    assert!(validate_put(&scope(), &bad, t0())
        .unwrap_err()
        .to_string()
        .contains("nope"));
}

#[test]
fn history_items_are_summarized_as_cloudwatch_summarizes_them() {
    let old = validate_put(&scope(), &input(), t0()).unwrap();
    let (summary, data) = configuration_item(None, Some(&old));
    assert_eq!(summary, "Alarm \"cpu-high\" created");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["type"], "Create");
    assert_eq!(data["createdAlarm"]["metricName"], "CPUUtilization");

    let mut updated = old.clone();
    updated.threshold = 9.0;
    let (summary, data) = configuration_item(Some(&old), Some(&updated));
    assert_eq!(summary, "Alarm \"cpu-high\" updated");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        data["originalUpdatedFields"],
        serde_json::json!({"threshold": 5.0})
    );
    assert_eq!(data["updatedAlarm"]["threshold"], 9.0);

    let mut alarming = old.clone();
    alarming.state_value = StateValue::Alarm;
    alarming.state_reason = "Threshold Crossed: …".into();
    alarming.state_reason_data = Some(r#"{"version":"1.0"}"#.into());
    let (summary, data) = state_item(&old, &alarming);
    assert_eq!(summary, "Alarm updated from INSUFFICIENT_DATA to ALARM");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["oldState"]["stateValue"], "INSUFFICIENT_DATA");
    assert_eq!(data["newState"]["stateReasonData"]["version"], "1.0");

    let arn = "arn:aws:autoscaling:us-east-1:1:scalingPolicy:x";
    let (summary, _) = action_item(arn, &ActionOutcome::Succeeded, t0());
    assert_eq!(summary, format!("Successfully executed action {arn}"));
    let (summary, data) = action_item(arn, &ActionOutcome::Failed("no such policy".into()), t0());
    assert_eq!(summary, format!("Failed to execute action {arn}"));
    assert!(data.contains("no such policy"));
}

#[test]
fn transitions_carry_the_actions_of_the_new_state_unless_disabled() {
    let mut i = input();
    i.alarm_actions = vec!["arn:aws:autoscaling:us-east-1:111122223333:scalingPolicy:p1".into()];
    i.ok_actions = vec!["arn:aws:autoscaling:us-east-1:111122223333:scalingPolicy:p2".into()];
    let old = validate_put(&scope(), &i, t0()).unwrap();
    let mut new = old.clone();
    new.state_value = StateValue::Alarm;
    let t = AlarmTransition::new(&scope(), &old, &new, vec![9.0], t0());
    assert_eq!(t.actions, i.alarm_actions);
    assert_eq!(
        (t.old_state, t.new_state),
        (StateValue::InsufficientData, StateValue::Alarm)
    );
    new.actions_enabled = false;
    assert!(AlarmTransition::new(&scope(), &old, &new, vec![], t0())
        .actions
        .is_empty());
    assert_eq!(name_from_arn(&scope(), &old.alarm_arn), Some("cpu-high"));
    assert_eq!(
        name_from_arn(&Scope::new("999", "us-east-1"), &old.alarm_arn),
        None
    );
}
