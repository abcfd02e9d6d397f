//! Alarms against a real store file, driven by a deterministic clock: the
//! high-resolution alarm that goes to ALARM and back to OK at exactly the
//! evaluation that should cause it, SetAlarmState, history, DescribeAlarms,
//! tags, metric math alarms, reopening.

use flotilla_metrics::*;
use flotilla_model::arn::Scope;

fn scope() -> Scope {
    Scope::new("111122223333", "us-east-1")
}

/// 2026-06-12T10:00:00Z.
fn t0() -> Timestamp {
    Timestamp::from_secs(1_781_258_400)
}

const SCALE_OUT: &str = "arn:aws:autoscaling:us-east-1:111122223333:scalingPolicy:7f6e:resource/ecs/service/prod/web:policyName/out";
const SCALE_IN: &str = "arn:aws:autoscaling:us-east-1:111122223333:scalingPolicy:8a1b:resource/ecs/service/prod/web:policyName/in";

fn open(dir: &tempfile::TempDir) -> MetricStore {
    MetricStore::open(
        &dir.path().join("metrics.db"),
        MetricStoreOptions::default(),
    )
    .unwrap()
}

async fn put_value(
    store: &MetricStore,
    name: &str,
    value: f64,
    at: Timestamp,
    high_resolution: bool,
) {
    let input = PutMetricDataInput {
        namespace: "App".into(),
        metric_data: vec![MetricDatum {
            metric_name: name.into(),
            dimensions: vec![Dimension::new("Service", "web")],
            timestamp: Some(at),
            value: Some(value),
            storage_resolution: high_resolution.then_some(1),
            ..Default::default()
        }],
    };
    store.put_metric_data(&scope(), &input, at).await.unwrap();
}

fn alarm_input(name: &str, period: i64) -> PutMetricAlarmInput {
    PutMetricAlarmInput {
        alarm_name: name.into(),
        metric_name: Some("Latency".into()),
        namespace: Some("App".into()),
        statistic: Some(Statistic::Average),
        dimensions: vec![Dimension::new("Service", "web")],
        period: Some(period),
        evaluation_periods: Some(3),
        threshold: Some(80.0),
        comparison_operator: Some(ComparisonOperator::GreaterThanOrEqualToThreshold),
        alarm_actions: vec![SCALE_OUT.into()],
        ok_actions: vec![SCALE_IN.into()],
        ..Default::default()
    }
}

fn history(store: &MetricStore, name: &str) -> Vec<AlarmHistoryItem> {
    let input = DescribeAlarmHistoryInput {
        alarm_name: Some(name.into()),
        scan_by: Some(ScanBy::TimestampAscending),
        ..Default::default()
    };
    store
        .describe_alarm_history(&scope(), &input)
        .unwrap()
        .alarm_history_items
}

fn describe(store: &MetricStore, name: &str) -> MetricAlarm {
    let input = DescribeAlarmsInput {
        alarm_names: vec![name.into()],
        ..Default::default()
    };
    store
        .describe_alarms(&scope(), &input)
        .unwrap()
        .metric_alarms
        .remove(0)
}

/// A 1-second metric, a 10-second alarm (3 of 3 at ≥ 80): the value is 50
/// for the first minute, 90 for the second, 50 again after. Evaluated as of
/// 10-second boundaries, the three newest periods first all hold 90 at
/// 10:01:30, and the first 50 enters them at 10:02:10.
#[tokio::test]
async fn a_high_resolution_alarm_fires_and_clears_at_exactly_the_right_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let created = store
        .put_metric_alarm(&scope(), &alarm_input("latency-high", 10), t0())
        .await
        .unwrap();
    assert_eq!(created, None, "no data yet: it stays INSUFFICIENT_DATA");
    assert_eq!(store.next_evaluation(), Some(t0().plus_secs(10)));

    let mut transitions = Vec::new();
    let mut repeats = Vec::new();
    let mut evaluations = 0;
    for s in 0..=180 {
        let now = t0().plus_secs(s);
        let value = if (60..120).contains(&s) { 90.0 } else { 50.0 };
        put_value(&store, "Latency", value, now, true).await;
        if store.next_evaluation().is_some_and(|due| due <= now) {
            evaluations += 1;
            for t in store.evaluate_due(now).await.unwrap() {
                for action in &t.actions {
                    store
                        .record_action(
                            &scope(),
                            &t.alarm_name,
                            action,
                            &ActionOutcome::Succeeded,
                            now,
                        )
                        .await
                        .unwrap();
                }
                if t.repeat {
                    repeats.push(t);
                } else {
                    transitions.push(t);
                }
            }
            assert_eq!(
                store.next_evaluation(),
                Some(now.plus_secs(10)),
                "due every 10 s"
            );
        }
    }
    assert_eq!(evaluations, 18);
    // OK since 10:00:10 with a scale-in policy among its OK actions: the
    // Auto Scaling action is invoked again a minute later; in ALARM from
    // 10:01:30 to 10:02:10, less than a minute, no repeat.
    let repeated: Vec<(i64, StateValue, Vec<String>)> = repeats
        .iter()
        .map(|t| {
            (
                (t.at.millis() - t0().millis()) / 1000,
                t.new_state,
                t.actions.clone(),
            )
        })
        .collect();
    assert_eq!(
        repeated,
        vec![(70, StateValue::Ok, vec![SCALE_IN.to_string()])]
    );
    let seen: Vec<(i64, StateValue, StateValue)> = transitions
        .iter()
        .map(|t| {
            (
                (t.at.millis() - t0().millis()) / 1000,
                t.old_state,
                t.new_state,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (10, StateValue::InsufficientData, StateValue::Ok),
            (90, StateValue::Ok, StateValue::Alarm),
            (130, StateValue::Alarm, StateValue::Ok),
        ]
    );
    let alarm_t = &transitions[1];
    assert_eq!(alarm_t.actions, vec![SCALE_OUT.to_string()]);
    assert_eq!(
        alarm_t.reason,
        "Threshold Crossed: 3 out of the last 3 datapoints [90.0 (12/06/26 10:01:20), 90.0 (12/06/26 10:01:10), 90.0 (12/06/26 10:01:00)] were greater than or equal to the threshold (80.0) (minimum 3 datapoints for OK -> ALARM transition)."
    );
    assert_eq!(alarm_t.threshold, 80.0);
    assert_eq!(alarm_t.recent_datapoints, vec![90.0, 90.0, 90.0]);
    assert_eq!(transitions[2].actions, vec![SCALE_IN.to_string()]);
    assert_eq!(
        transitions[2].reason,
        "Threshold Crossed: 1 out of the last 3 datapoints [50.0 (12/06/26 10:02:00)] was not greater than or equal to the threshold (80.0) (minimum 1 datapoint for ALARM -> OK transition)."
    );

    let items: Vec<(i64, HistoryItemType, String)> = history(&store, "latency-high")
        .into_iter()
        .map(|h| {
            (
                (h.timestamp.millis() - t0().millis()) / 1000,
                h.history_item_type,
                h.history_summary,
            )
        })
        .collect();
    let state = HistoryItemType::StateUpdate;
    let action = HistoryItemType::Action;
    assert_eq!(
        items,
        vec![
            (
                0,
                HistoryItemType::ConfigurationUpdate,
                "Alarm \"latency-high\" created".to_string()
            ),
            (
                10,
                state,
                "Alarm updated from INSUFFICIENT_DATA to OK".to_string()
            ),
            (
                10,
                action,
                format!("Successfully executed action {SCALE_IN}")
            ),
            (
                70,
                action,
                format!("Successfully executed action {SCALE_IN}")
            ),
            (90, state, "Alarm updated from OK to ALARM".to_string()),
            (
                90,
                action,
                format!("Successfully executed action {SCALE_OUT}")
            ),
            (130, state, "Alarm updated from ALARM to OK".to_string()),
            (
                130,
                action,
                format!("Successfully executed action {SCALE_IN}")
            ),
        ]
    );
    let alarm = describe(&store, "latency-high");
    assert_eq!(alarm.state_value, StateValue::Ok);
    assert_eq!(alarm.state_transitioned_timestamp, t0().plus_secs(130));
    let data: serde_json::Value =
        serde_json::from_str(alarm.state_reason_data.as_deref().unwrap()).unwrap();
    assert_eq!(data["period"], 10);
    assert_eq!(data["statistic"], "Average");
}

#[tokio::test]
async fn set_alarm_state_holds_until_the_next_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for m in 0..5 {
        put_value(&store, "Latency", 10.0, t0().plus_secs(60 * m), false).await;
    }
    let now = t0().plus_secs(300);
    let first = store
        .put_metric_alarm(&scope(), &alarm_input("latency-high", 60), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.old_state, first.new_state),
        (StateValue::InsufficientData, StateValue::Ok)
    );
    assert_eq!(first.actions, vec![SCALE_IN.to_string()]);

    let set = SetAlarmStateInput {
        alarm_name: "latency-high".into(),
        state_value: StateValue::Alarm,
        state_reason: "testing the rollback".into(),
        state_reason_data: Some(r#"{"by":"test"}"#.into()),
    };
    let t = store
        .set_alarm_state(&scope(), &set, now.plus_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.old_state, t.new_state),
        (StateValue::Ok, StateValue::Alarm)
    );
    assert_eq!(t.actions, vec![SCALE_OUT.to_string()]);
    assert_eq!(t.reason, "testing the rollback");
    assert_eq!(
        describe(&store, "latency-high").state_value,
        StateValue::Alarm
    );

    // The next evaluation (10:06) looks at the data: back to OK.
    let due = store.next_evaluation().unwrap();
    assert_eq!(due, t0().plus_secs(360));
    assert!(store
        .evaluate_due(due.minus_secs(1))
        .await
        .unwrap()
        .is_empty());
    let back = store.evaluate_due(due).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].old_state, back[0].new_state),
        (StateValue::Alarm, StateValue::Ok)
    );

    // Set to the state the data agrees with: no transition, but the next
    // evaluation writes its own reason.
    let set_ok = SetAlarmStateInput {
        state_value: StateValue::Ok,
        state_reason_data: None,
        ..set.clone()
    };
    assert_eq!(
        store
            .set_alarm_state(&scope(), &set_ok, due.plus_secs(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        describe(&store, "latency-high").state_reason,
        "testing the rollback"
    );
    let later = store.evaluate_due(due.plus_secs(60)).await.unwrap();
    assert!(later.iter().all(|t| t.repeat), "no state change: {later:?}");
    assert!(describe(&store, "latency-high")
        .state_reason
        .starts_with("Threshold Crossed: "));

    let summaries: Vec<String> = history(&store, "latency-high")
        .into_iter()
        .map(|h| h.history_summary)
        .collect();
    assert_eq!(
        summaries,
        [
            "Alarm \"latency-high\" created",
            "Alarm updated from INSUFFICIENT_DATA to OK",
            "Alarm updated from OK to ALARM",
            "Alarm updated from ALARM to OK",
        ]
    );

    // Errors: unknown alarm, reason data that is not JSON.
    let unknown = SetAlarmStateInput {
        alarm_name: "nope".into(),
        ..set.clone()
    };
    assert_eq!(
        store
            .set_alarm_state(&scope(), &unknown, now)
            .await
            .unwrap_err()
            .code(),
        "ResourceNotFound"
    );
    let garbled = SetAlarmStateInput {
        state_reason_data: Some("{not json".into()),
        ..set
    };
    assert_eq!(
        store
            .set_alarm_state(&scope(), &garbled, now)
            .await
            .unwrap_err()
            .code(),
        "InvalidFormat"
    );
}

#[tokio::test]
async fn updates_keep_the_state_disabled_actions_are_not_handed_out_and_history_outlives_deletion()
{
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for m in 0..5 {
        put_value(&store, "Latency", 95.0, t0().plus_secs(60 * m), false).await;
    }
    let now = t0().plus_secs(300);
    let t = store
        .put_metric_alarm(&scope(), &alarm_input("hot", 60), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.new_state, StateValue::Alarm);

    // Update: the threshold moves above the data; the state is kept until
    // the immediate evaluation, which turns it OK.
    let mut higher = alarm_input("hot", 60);
    higher.threshold = Some(99.0);
    let t = store
        .put_metric_alarm(&scope(), &higher, now.plus_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.old_state, t.new_state),
        (StateValue::Alarm, StateValue::Ok)
    );

    store
        .set_alarm_actions_enabled(&scope(), &["hot".into()], false)
        .await
        .unwrap();
    assert!(!describe(&store, "hot").actions_enabled);
    let set = SetAlarmStateInput {
        alarm_name: "hot".into(),
        state_value: StateValue::Alarm,
        state_reason: "drill".into(),
        state_reason_data: None,
    };
    let t = store
        .set_alarm_state(&scope(), &set, now.plus_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert!(t.actions.is_empty(), "actions are disabled");
    store
        .set_alarm_actions_enabled(&scope(), &["hot".into(), "unknown".into()], true)
        .await
        .unwrap();
    assert!(describe(&store, "hot").actions_enabled);

    store
        .delete_alarms(
            &scope(),
            &["hot".into(), "never-existed".into()],
            now.plus_secs(3),
        )
        .await
        .unwrap();
    let all = store
        .describe_alarms(&scope(), &DescribeAlarmsInput::default())
        .unwrap();
    assert!(all.metric_alarms.is_empty());
    assert_eq!(store.next_evaluation(), None);
    let summaries: Vec<String> = history(&store, "hot")
        .into_iter()
        .map(|h| h.history_summary)
        .collect();
    assert_eq!(
        summaries,
        [
            "Alarm \"hot\" created",
            "Alarm updated from INSUFFICIENT_DATA to ALARM",
            "Alarm \"hot\" updated",
            "Alarm updated from ALARM to OK",
            "Alarm updated from OK to ALARM",
            "Alarm \"hot\" deleted",
        ]
    );
    let only_config = DescribeAlarmHistoryInput {
        alarm_name: Some("hot".into()),
        history_item_type: Some(HistoryItemType::ConfigurationUpdate),
        max_records: Some(2),
        ..Default::default()
    };
    let page = store
        .describe_alarm_history(&scope(), &only_config)
        .unwrap();
    assert_eq!(page.alarm_history_items.len(), 2);
    assert_eq!(
        page.alarm_history_items[0].history_summary,
        "Alarm \"hot\" deleted"
    ); // newest first
    let rest = DescribeAlarmHistoryInput {
        next_token: page.next_token,
        ..only_config
    };
    let page = store.describe_alarm_history(&scope(), &rest).unwrap();
    assert_eq!(page.alarm_history_items.len(), 1);
    assert_eq!(page.next_token, None);

    // History is kept 30 days.
    store.maintain(now.plus_secs(31 * 86_400)).await.unwrap();
    assert!(history(&store, "hot").is_empty());
}

#[tokio::test]
async fn alarms_on_metric_math() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for m in 0..5 {
        let at = t0().plus_secs(60 * m);
        put_value(&store, "Errors", if m >= 2 { 20.0 } else { 1.0 }, at, false).await;
        put_value(&store, "Requests", 100.0, at, false).await;
    }
    let metric = |id: &str, name: &str| MetricDataQuery {
        id: id.into(),
        metric_stat: Some(MetricStat {
            namespace: "App".into(),
            metric_name: name.into(),
            dimensions: vec![Dimension::new("Service", "web")],
            period: 60,
            stat: "Sum".into(),
            unit: None,
        }),
        return_data: Some(false),
        ..Default::default()
    };
    let input = PutMetricAlarmInput {
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
        evaluation_periods: Some(3),
        threshold: Some(10.0),
        comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
        ..Default::default()
    };
    let t = store
        .put_metric_alarm(&scope(), &input, t0().plus_secs(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.new_state, StateValue::Alarm);
    assert_eq!(t.recent_datapoints, vec![20.0, 20.0, 20.0]);
    let alarm = describe(&store, "error-rate");
    assert_eq!(alarm.metrics.len(), 3);
    assert_eq!(alarm.metric_name, None);
    // Not a single-metric alarm: DescribeAlarmsForMetric does not list it.
    let for_metric = DescribeAlarmsForMetricInput {
        metric_name: "Errors".into(),
        namespace: "App".into(),
        ..Default::default()
    };
    assert!(store
        .describe_alarms_for_metric(&scope(), &for_metric)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn describe_alarms_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0();
    for i in 0..120 {
        let mut input = alarm_input(&format!("alarm-{i:03}"), 60);
        if i % 2 == 0 {
            input.alarm_actions = vec!["arn:aws:sns:us-east-1:111122223333:pager".into()];
        }
        if i == 7 {
            input.metric_name = Some("Other".into());
        }
        store.put_metric_alarm(&scope(), &input, now).await.unwrap();
    }
    let set = SetAlarmStateInput {
        alarm_name: "alarm-042".into(),
        state_value: StateValue::Alarm,
        state_reason: "x".into(),
        state_reason_data: None,
    };
    store.set_alarm_state(&scope(), &set, now).await.unwrap();

    let mut names = Vec::new();
    let mut input = DescribeAlarmsInput::default();
    for _ in 0..10 {
        let page = store.describe_alarms(&scope(), &input).unwrap();
        assert!(page.metric_alarms.len() <= 50);
        names.extend(page.metric_alarms.into_iter().map(|a| a.alarm_name));
        input.next_token = page.next_token;
        if input.next_token.is_none() {
            break;
        }
    }
    assert_eq!(names.len(), 120);
    assert!(names.windows(2).all(|w| w[0] < w[1]));

    let count = |input: DescribeAlarmsInput| {
        store
            .describe_alarms(&scope(), &input)
            .unwrap()
            .metric_alarms
            .len()
    };
    assert_eq!(
        count(DescribeAlarmsInput {
            state_value: Some(StateValue::Alarm),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(DescribeAlarmsInput {
            action_prefix: Some("arn:aws:sns:".into()),
            max_records: Some(100),
            ..Default::default()
        }),
        60
    );
    assert_eq!(
        count(DescribeAlarmsInput {
            alarm_name_prefix: Some("alarm-11".into()),
            ..Default::default()
        }),
        10
    );
    assert_eq!(
        count(DescribeAlarmsInput {
            alarm_names: vec!["alarm-001".into(), "nope".into()],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(DescribeAlarmsInput {
            alarm_types: vec![AlarmType::CompositeAlarm],
            ..Default::default()
        }),
        0
    );
    let err = store
        .describe_alarms(
            &scope(),
            &DescribeAlarmsInput {
                max_records: Some(101),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterValue");
    let err = store
        .describe_alarms(
            &scope(),
            &DescribeAlarmsInput {
                next_token: Some("x".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), "InvalidNextToken");
    let err = store
        .describe_alarms(
            &scope(),
            &DescribeAlarmsInput {
                alarm_names: vec!["a".into()],
                alarm_name_prefix: Some("a".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterCombination");

    let for_metric = DescribeAlarmsForMetricInput {
        metric_name: "Latency".into(),
        namespace: "App".into(),
        dimensions: vec![Dimension::new("Service", "web")],
        statistic: Some(Statistic::Average),
        period: Some(60),
        ..Default::default()
    };
    assert_eq!(
        store
            .describe_alarms_for_metric(&scope(), &for_metric)
            .unwrap()
            .len(),
        119
    );
    let wrong_period = DescribeAlarmsForMetricInput {
        period: Some(300),
        ..for_metric
    };
    assert!(store
        .describe_alarms_for_metric(&scope(), &wrong_period)
        .unwrap()
        .is_empty());
    // Another account sees none of them.
    let stranger = Scope::new("444455556666", "us-east-1");
    assert!(store
        .describe_alarms(&stranger, &DescribeAlarmsInput::default())
        .unwrap()
        .metric_alarms
        .is_empty());
}

#[tokio::test]
async fn target_tracking_alarms_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let name = "TargetTracking-service/prod/web-AlarmHigh-4f1c2d3e-aaaa-bbbb-cccc-0123456789ab";
    let mut input = alarm_input(name, 60);
    input.namespace = Some("AWS/ECS".into());
    input.metric_name = Some("CPUUtilization".into());
    input.alarm_description = Some(
        "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy arn:aws:autoscaling:…".into(),
    );
    input.tags = vec![Tag {
        key: "team".into(),
        value: "web".into(),
    }];
    store
        .put_metric_alarm(&scope(), &input, t0())
        .await
        .unwrap();
    let prefix = DescribeAlarmsInput {
        alarm_name_prefix: Some("TargetTracking-service/prod/web-".into()),
        ..Default::default()
    };
    let found = store
        .describe_alarms(&scope(), &prefix)
        .unwrap()
        .metric_alarms;
    assert_eq!(found.len(), 1);
    let arn = found[0].alarm_arn.clone();
    assert_eq!(
        arn,
        format!("arn:aws:cloudwatch:us-east-1:111122223333:alarm:{name}")
    );

    assert_eq!(
        store.list_tags_for_resource(&scope(), &arn).unwrap(),
        input.tags
    );
    let more = [
        Tag {
            key: "team".into(),
            value: "api".into(),
        },
        Tag {
            key: "env".into(),
            value: "prod".into(),
        },
    ];
    store.tag_resource(&scope(), &arn, &more).await.unwrap();
    assert_eq!(
        store.list_tags_for_resource(&scope(), &arn).unwrap(),
        more.to_vec()
    );
    store
        .untag_resource(&scope(), &arn, &["team".into()])
        .await
        .unwrap();
    assert_eq!(
        store.list_tags_for_resource(&scope(), &arn).unwrap(),
        vec![more[1].clone()]
    );
    // Tags on update are ignored.
    store
        .put_metric_alarm(&scope(), &input, t0().plus_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.list_tags_for_resource(&scope(), &arn).unwrap(),
        vec![more[1].clone()]
    );

    let missing = "arn:aws:cloudwatch:us-east-1:111122223333:alarm:nope";
    let err = store.list_tags_for_resource(&scope(), missing).unwrap_err();
    assert_eq!(err.code(), "ResourceNotFoundException");
    assert_eq!(err.http_status(), 404);
    assert_eq!(
        store
            .list_tags_for_resource(&scope(), "nope")
            .unwrap_err()
            .code(),
        "InvalidParameterValue"
    );
    let too_many: Vec<Tag> = (0..50)
        .map(|i| Tag {
            key: format!("k{i}"),
            value: "v".into(),
        })
        .collect();
    assert!(store.tag_resource(&scope(), &arn, &too_many).await.is_err());
}

#[tokio::test]
async fn alarms_survive_a_reopen_and_are_evaluated_at_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store
            .put_metric_alarm(&scope(), &alarm_input("latency-high", 60), t0())
            .await
            .unwrap();
        store.close();
    }
    let store = open(&dir);
    assert_eq!(store.alarm_count(), 1);
    let now = t0().plus_secs(3600);
    assert!(store.next_evaluation().unwrap() <= now);
    for m in 0..5 {
        put_value(&store, "Latency", 99.0, now.minus_secs(60 * (m + 1)), false).await;
    }
    let transitions = store.evaluate_due(now).await.unwrap();
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].new_state, StateValue::Alarm);
    assert_eq!(store.next_evaluation(), Some(now.plus_secs(60)));
}

#[tokio::test]
async fn the_alarm_quota_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricStore::open(
        &dir.path().join("m.db"),
        MetricStoreOptions {
            max_alarms_per_scope: 2,
        },
    )
    .unwrap();
    for name in ["a", "b"] {
        store
            .put_metric_alarm(&scope(), &alarm_input(name, 60), t0())
            .await
            .unwrap();
    }
    let err = store
        .put_metric_alarm(&scope(), &alarm_input("c", 60), t0())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "LimitExceeded");
    // Updating an existing alarm is not a new one.
    store
        .put_metric_alarm(&scope(), &alarm_input("a", 60), t0())
        .await
        .unwrap();
    // Another account has its own quota.
    store
        .put_metric_alarm(
            &Scope::new("444455556666", "us-east-1"),
            &alarm_input("c", 60),
            t0(),
        )
        .await
        .unwrap();
}

/// CloudWatch invokes Auto Scaling actions (and only those) again once a
/// minute while the alarm stays in the state.
#[tokio::test]
async fn auto_scaling_actions_repeat_every_minute_while_the_state_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let topic = "arn:aws:sns:us-east-1:111122223333:pager";
    let mut input = alarm_input("hot", 60);
    input.alarm_actions = vec![SCALE_OUT.into(), topic.into()];
    input.evaluation_periods = Some(1);
    let start = t0();
    put_value(&store, "Latency", 99.0, start.minus_secs(30), false).await;
    let first = store
        .put_metric_alarm(&scope(), &input, start)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.actions,
        vec![SCALE_OUT.to_string(), topic.to_string()]
    );
    let mut seen = Vec::new();
    for minute in 1..=4 {
        let now = start.plus_secs(60 * minute);
        put_value(&store, "Latency", 99.0, now.minus_secs(30), false).await;
        for t in store.evaluate_due(now).await.unwrap() {
            assert!(t.repeat);
            assert_eq!(t.new_state, StateValue::Alarm);
            assert_eq!(t.recent_datapoints, vec![99.0]);
            seen.push((minute, t.actions));
        }
    }
    let scale_out = vec![SCALE_OUT.to_string()];
    assert_eq!(
        seen,
        vec![
            (1, scale_out.clone()),
            (2, scale_out.clone()),
            (3, scale_out.clone()),
            (4, scale_out)
        ]
    );
    // Repeats write nothing.
    assert_eq!(history(&store, "hot").len(), 2);
    // Not with actions disabled.
    store
        .set_alarm_actions_enabled(&scope(), &["hot".into()], false)
        .await
        .unwrap();
    let now = start.plus_secs(300);
    put_value(&store, "Latency", 99.0, now.minus_secs(30), false).await;
    assert!(store.evaluate_due(now).await.unwrap().is_empty());
}
