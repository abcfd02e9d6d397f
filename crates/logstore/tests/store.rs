//! The engine through its public API, on real files in a temp directory.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flotilla_logstore::*;

const NOW: i64 = 1_750_000_000_000;
const DAY: i64 = 86_400_000;

fn scope() -> Scope {
    Scope::new("123456789012", "us-east-1")
}

struct Fixture {
    store: LogStore,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn open_with(options: StoreOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let store = LogStore::open_with(dir.path(), options, clock.clone()).unwrap();
    Fixture {
        store,
        clock,
        _dir: dir,
    }
}

fn open() -> Fixture {
    open_with(StoreOptions::default())
}

async fn group(store: &LogStore, name: &str) {
    store
        .create_log_group(
            &scope(),
            CreateLogGroupRequest {
                log_group_name: name.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

async fn put(
    store: &LogStore,
    group: &str,
    stream: &str,
    events: &[(i64, &str)],
) -> PutLogEventsOutput {
    store
        .put_log_events(
            &scope(),
            PutLogEventsRequest {
                log_group_name: group.into(),
                log_stream_name: stream.into(),
                log_events: events
                    .iter()
                    .map(|(t, m)| InputLogEvent::new(*t, *m))
                    .collect(),
                sequence_token: None,
            },
        )
        .await
        .unwrap()
}

async fn filter(store: &LogStore, req: FilterLogEventsRequest) -> FilterLogEventsOutput {
    store.filter_log_events(&scope(), req).await.unwrap()
}

fn messages_of(events: &[FilteredLogEvent]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

#[tokio::test]
async fn log_groups_are_created_described_tagged_and_deleted() {
    let f = open();
    let s = &f.store;
    for name in ["/ecs/web", "/ecs/worker", "/ecs/Web-2", "app"] {
        group(s, name).await;
    }
    let e = s
        .create_log_group(
            &scope(),
            CreateLogGroupRequest {
                log_group_name: "app".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ResourceAlreadyExistsException");
    let e = s
        .create_log_group(
            &scope(),
            CreateLogGroupRequest {
                log_group_name: "bad name".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("logGroupName"), "{e}");

    let all = s
        .describe_log_groups(&scope(), &Default::default())
        .unwrap();
    let names: Vec<_> = all
        .log_groups
        .iter()
        .map(|g| g.log_group_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["/ecs/Web-2", "/ecs/web", "/ecs/worker", "app"],
        "ASCII order"
    );
    let g = &all.log_groups[1];
    assert_eq!(
        g.arn,
        "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web:*"
    );
    assert_eq!(
        g.log_group_arn.as_deref(),
        Some("arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web")
    );
    assert_eq!(g.creation_time, NOW);
    assert_eq!(g.log_group_class, Some(LogGroupClass::Standard));
    assert_eq!(g.stored_bytes, Some(0));
    assert_eq!(g.metric_filter_count, Some(0));
    assert_eq!(g.retention_in_days, None);

    let prefixed = s
        .describe_log_groups(
            &scope(),
            &DescribeLogGroupsRequest {
                log_group_name_prefix: Some("/ecs/w".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(prefixed.log_groups.len(), 2);
    let pattern = s
        .describe_log_groups(
            &scope(),
            &DescribeLogGroupsRequest {
                log_group_name_pattern: Some("eb".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let names: Vec<_> = pattern
        .log_groups
        .iter()
        .map(|g| g.log_group_name.as_str())
        .collect();
    assert_eq!(names, ["/ecs/Web-2", "/ecs/web"]);
    assert_eq!(
        pattern.log_groups[0].stored_bytes, None,
        "pattern answers carry fewer fields"
    );
    let both = s.describe_log_groups(
        &scope(),
        &DescribeLogGroupsRequest {
            log_group_name_prefix: Some("a".into()),
            log_group_name_pattern: Some("a".into()),
            ..Default::default()
        },
    );
    assert_eq!(both.unwrap_err().code(), "InvalidParameterException");

    // Paging: limit 1 through all four, then no token.
    let mut token = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = s
            .describe_log_groups(
                &scope(),
                &DescribeLogGroupsRequest {
                    limit: Some(1),
                    next_token: token.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        seen.extend(page.log_groups.into_iter().map(|g| g.log_group_name));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 4);
    for bad in [0, 51] {
        let e = s.describe_log_groups(
            &scope(),
            &DescribeLogGroupsRequest {
                limit: Some(bad),
                ..Default::default()
            },
        );
        assert_eq!(e.unwrap_err().code(), "InvalidParameterException");
    }

    // Another account sees nothing.
    let other = Scope::new("210987654321", "us-east-1");
    assert!(s
        .describe_log_groups(&other, &Default::default())
        .unwrap()
        .log_groups
        .is_empty());

    // Retention.
    s.put_retention_policy(&scope(), "app", 7).await.unwrap();
    let e = s
        .put_retention_policy(&scope(), "app", 8)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let e = s
        .put_retention_policy(&scope(), "nope", 7)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "The specified log group does not exist.");
    let app = |s: &LogStore| {
        s.describe_log_groups(
            &scope(),
            &DescribeLogGroupsRequest {
                log_group_name_prefix: Some("app".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .log_groups
        .remove(0)
    };
    assert_eq!(app(s).retention_in_days, Some(7));
    s.delete_retention_policy(&scope(), "app").await.unwrap();
    assert_eq!(app(s).retention_in_days, None);

    // Tags by ARN and by name.
    let arn = "arn:aws:logs:us-east-1:123456789012:log-group:app";
    s.tag_resource(
        &scope(),
        arn,
        [("team".to_string(), "web".to_string())].into(),
    )
    .await
    .unwrap();
    s.tag_log_group(
        &scope(),
        "app",
        [("env".to_string(), "prod".to_string())].into(),
    )
    .await
    .unwrap();
    let tags = s.list_tags_for_resource(&scope(), arn).unwrap();
    assert_eq!(
        tags,
        BTreeMap::from([("env".into(), "prod".into()), ("team".into(), "web".into())])
    );
    s.untag_resource(&scope(), arn, vec!["team".into()])
        .await
        .unwrap();
    assert_eq!(s.list_tags_log_group(&scope(), "app").unwrap().len(), 1);
    let e = s
        .list_tags_for_resource(
            &scope(),
            "arn:aws:logs:us-east-1:123456789012:log-group:nope",
        )
        .unwrap_err();
    assert_eq!(e.code(), "ResourceNotFoundException");

    // Deletion, with and without protection.
    s.put_log_group_deletion_protection(&scope(), "app", true)
        .await
        .unwrap();
    assert_eq!(
        s.delete_log_group(&scope(), "app")
            .await
            .unwrap_err()
            .code(),
        "ValidationException"
    );
    s.put_log_group_deletion_protection(&scope(), arn, false)
        .await
        .unwrap();
    s.delete_log_group(&scope(), "app").await.unwrap();
    let e = s.delete_log_group(&scope(), "app").await.unwrap_err();
    assert_eq!(e.to_string(), "The specified log group does not exist.");
}

#[tokio::test]
async fn log_streams_are_described_by_name_and_by_last_event_time() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    for name in ["b", "a", "c/1", "c/2"] {
        s.create_log_stream(&scope(), "g", name).await.unwrap();
    }
    let e = s.create_log_stream(&scope(), "g", "a").await.unwrap_err();
    assert_eq!(e.code(), "ResourceAlreadyExistsException");
    let e = s.create_log_stream(&scope(), "g", "x:y").await.unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let e = s
        .create_log_stream(&scope(), "nope", "a")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "The specified log group does not exist.");

    let out = put(s, "g", "c/1", &[(NOW - 30, "x"), (NOW - 20, "y")]).await;
    put(s, "g", "a", &[(NOW - 10, "z")]).await;

    let describe = |req: DescribeLogStreamsRequest| s.describe_log_streams(&scope(), &req).unwrap();
    let by_name = describe(DescribeLogStreamsRequest {
        log_group_name: Some("g".into()),
        ..Default::default()
    });
    let names: Vec<_> = by_name
        .log_streams
        .iter()
        .map(|s| s.log_stream_name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c/1", "c/2"]);
    let c1 = &by_name.log_streams[2];
    assert_eq!(c1.first_event_timestamp, Some(NOW - 30));
    assert_eq!(c1.last_event_timestamp, Some(NOW - 20));
    assert_eq!(c1.last_ingestion_time, Some(NOW));
    assert_eq!(c1.creation_time, NOW);
    assert_eq!(c1.upload_sequence_token, out.next_sequence_token);
    assert_eq!(c1.stored_bytes, 0);
    assert_eq!(
        c1.arn,
        "arn:aws:logs:us-east-1:123456789012:log-group:g:log-stream:c/1"
    );
    assert_eq!(
        by_name.log_streams[1].upload_sequence_token, None,
        "no batch yet"
    );

    let prefixed = describe(DescribeLogStreamsRequest {
        log_group_identifier: Some("arn:aws:logs:us-east-1:123456789012:log-group:g".into()),
        log_stream_name_prefix: Some("c/".into()),
        descending: Some(true),
        ..Default::default()
    });
    let names: Vec<_> = prefixed
        .log_streams
        .iter()
        .map(|s| s.log_stream_name.as_str())
        .collect();
    assert_eq!(names, ["c/2", "c/1"]);

    let by_time = describe(DescribeLogStreamsRequest {
        log_group_name: Some("g".into()),
        order_by: Some(OrderBy::LastEventTime),
        descending: Some(true),
        ..Default::default()
    });
    let names: Vec<_> = by_time
        .log_streams
        .iter()
        .map(|s| s.log_stream_name.as_str())
        .collect();
    assert_eq!(&names[..2], ["a", "c/1"], "latest event first");

    // Paging by time, one at a time, visits every stream once.
    let mut token = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = describe(DescribeLogStreamsRequest {
            log_group_name: Some("g".into()),
            order_by: Some(OrderBy::LastEventTime),
            limit: Some(1),
            next_token: token.clone(),
            ..Default::default()
        });
        seen.extend(page.log_streams.into_iter().map(|s| s.log_stream_name));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c/1", "c/2"]);

    let e = s.describe_log_streams(
        &scope(),
        &DescribeLogStreamsRequest {
            log_group_name: Some("g".into()),
            order_by: Some(OrderBy::LastEventTime),
            log_stream_name_prefix: Some("c".into()),
            ..Default::default()
        },
    );
    assert_eq!(e.unwrap_err().code(), "InvalidParameterException");

    s.delete_log_stream(&scope(), "g", "c/1").await.unwrap();
    let e = s.delete_log_stream(&scope(), "g", "c/1").await.unwrap_err();
    assert_eq!(e.to_string(), "The specified log stream does not exist.");
}

#[tokio::test]
async fn put_log_events_errors_name_the_rule() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    let req = |group: &str, stream: &str, events: Vec<InputLogEvent>| PutLogEventsRequest {
        log_group_name: group.into(),
        log_stream_name: stream.into(),
        log_events: events,
        sequence_token: None,
    };
    let e = s
        .put_log_events(
            &scope(),
            req("nope", "s", vec![InputLogEvent::new(NOW, "x")]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "The specified log group does not exist.");
    let e = s
        .put_log_events(
            &scope(),
            req("g", "nope", vec![InputLogEvent::new(NOW, "x")]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "The specified log stream does not exist.");
    let e = s
        .put_log_events(
            &scope(),
            req(
                "g",
                "s",
                vec![
                    InputLogEvent::new(NOW, "b"),
                    InputLogEvent::new(NOW - 1, "a"),
                ],
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Log events in a single PutLogEvents request must be in chronological order."
    );
    let out = s
        .put_log_events(
            &scope(),
            req(
                "g",
                "s",
                vec![
                    InputLogEvent::new(NOW - 15 * DAY, "old"),
                    InputLogEvent::new(NOW - 14 * DAY + 1000, "kept"),
                    InputLogEvent::new(NOW + 3 * 3_600_000, "new"),
                ],
            ),
        )
        .await
        .unwrap();
    let info = out.rejected_log_events_info.unwrap();
    assert_eq!(info.too_old_log_event_end_index, Some(1));
    assert_eq!(info.too_new_log_event_start_index, Some(2));
    let got = get(
        s,
        GetLogEventsRequest {
            start_from_head: Some(true),
            ..get_req()
        },
    )
    .await;
    assert_eq!(got.events.len(), 1);
    assert_eq!(got.events[0].message, "kept");
}

fn get_req() -> GetLogEventsRequest {
    GetLogEventsRequest {
        log_group_name: Some("g".into()),
        log_stream_name: "s".into(),
        ..Default::default()
    }
}

async fn get(store: &LogStore, req: GetLogEventsRequest) -> GetLogEventsOutput {
    store.get_log_events(&scope(), req).await.unwrap()
}

#[tokio::test]
async fn get_log_events_pages_forward_and_back_like_aws() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    // 25 events in three batches; the last batch starts before the second
    // ends, so frames overlap in time and the merge must interleave them.
    let batch = |range: std::ops::Range<i64>| -> Vec<(i64, String)> {
        range
            .map(|i| (NOW - 1000 + i * 10, format!("event {i:02}")))
            .collect()
    };
    for (i, b) in [batch(0..10), batch(10..20), batch(20..25)]
        .into_iter()
        .enumerate()
    {
        let events: Vec<(i64, &str)> = b.iter().map(|(t, m)| (*t, m.as_str())).collect();
        let _ = i;
        put(s, "g", "s", &events).await;
    }
    put(s, "g", "s", &[(NOW - 1000 + 195, "event 19b")]).await;
    let expected: Vec<String> = {
        let mut v: Vec<(i64, String)> = (0..25)
            .map(|i| (NOW - 1000 + i * 10, format!("event {i:02}")))
            .collect();
        v.push((NOW - 1000 + 195, "event 19b".into()));
        v.sort();
        v.into_iter().map(|(_, m)| m).collect()
    };

    // Default: the latest events, in ascending order.
    let tail = get(
        s,
        GetLogEventsRequest {
            limit: Some(5),
            ..get_req()
        },
    )
    .await;
    let msgs: Vec<_> = tail.events.iter().map(|e| e.message.clone()).collect();
    assert_eq!(msgs, expected[21..]);
    assert!(tail.next_forward_token.starts_with("f/"));
    assert!(tail.next_backward_token.starts_with("b/"));
    assert_eq!(tail.events[0].ingestion_time, NOW);

    // Backward from the tail, page by page, until the token comes back.
    let mut pages = vec![msgs];
    let mut token = tail.next_backward_token.clone();
    for _ in 0..20 {
        let page = get(
            s,
            GetLogEventsRequest {
                limit: Some(5),
                next_token: Some(token.clone()),
                ..get_req()
            },
        )
        .await;
        if page.next_backward_token == token {
            assert!(page.events.is_empty());
            break;
        }
        pages.push(page.events.iter().map(|e| e.message.clone()).collect());
        token = page.next_backward_token;
    }
    pages.reverse();
    assert_eq!(pages.concat(), expected);

    // Forward from the head, until the same forward token comes back.
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let page = get(
            s,
            GetLogEventsRequest {
                limit: Some(7),
                start_from_head: Some(true),
                next_token: token.clone(),
                ..get_req()
            },
        )
        .await;
        all.extend(page.events.iter().map(|e| e.message.clone()));
        if token.as_deref() == Some(page.next_forward_token.as_str()) {
            break;
        }
        token = Some(page.next_forward_token);
    }
    assert_eq!(all, expected);

    // An event appended later is found from the last forward token.
    put(s, "g", "s", &[(NOW, "later")]).await;
    let page = get(
        s,
        GetLogEventsRequest {
            start_from_head: Some(true),
            next_token: token.clone(),
            ..get_req()
        },
    )
    .await;
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].message, "later");

    // startTime inclusive, endTime exclusive.
    let window = get(
        s,
        GetLogEventsRequest {
            start_time: Some(NOW - 1000 + 20),
            end_time: Some(NOW - 1000 + 50),
            start_from_head: Some(true),
            ..get_req()
        },
    )
    .await;
    let msgs: Vec<_> = window.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, ["event 02", "event 03", "event 04"]);

    let e = s
        .get_log_events(
            &scope(),
            GetLogEventsRequest {
                next_token: Some("f/garbage".into()),
                ..get_req()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let e = s
        .get_log_events(
            &scope(),
            GetLogEventsRequest {
                log_stream_name: "nope".into(),
                ..get_req()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "The specified log stream does not exist.");
}

#[tokio::test]
async fn filter_log_events_interleaves_streams_with_stable_ids() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    for stream in ["app/a", "app/b", "other"] {
        s.create_log_stream(&scope(), "g", stream).await.unwrap();
    }
    put(
        s,
        "g",
        "app/a",
        &[
            (NOW - 50, "a1 INFO"),
            (NOW - 30, "a2 ERROR disk"),
            (NOW - 10, "a3 INFO"),
        ],
    )
    .await;
    put(
        s,
        "g",
        "app/b",
        &[(NOW - 40, "b1 ERROR net"), (NOW - 20, "b2 INFO")],
    )
    .await;
    put(
        s,
        "g",
        "other",
        &[(NOW - 35, r#"{"level":"ERROR","code":500}"#)],
    )
    .await;

    let all = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        messages_of(&all.events),
        [
            "a1 INFO",
            "b1 ERROR net",
            r#"{"level":"ERROR","code":500}"#,
            "a2 ERROR disk",
            "b2 INFO",
            "a3 INFO"
        ]
    );
    assert_eq!(all.next_token, None);
    assert_eq!(all.events[1].log_stream_name, "app/b");
    let ids: HashSet<_> = all.events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), 6, "unique ids");

    let errors = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            filter_pattern: Some("ERROR".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(errors.events.len(), 3);
    let json = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            filter_pattern: Some("{ $.code >= 500 }".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(json.events.len(), 1);
    assert_eq!(json.events[0].log_stream_name, "other");
    let prefixed = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            log_stream_name_prefix: Some("app/".into()),
            filter_pattern: Some("ERROR".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        messages_of(&prefixed.events),
        ["b1 ERROR net", "a2 ERROR disk"]
    );
    let named = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            log_stream_names: Some(vec!["app/a".into(), "missing".into()]),
            start_time: Some(NOW - 30),
            end_time: Some(NOW - 10),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        messages_of(&named.events),
        ["a2 ERROR disk", "a3 INFO"],
        "both ends inclusive"
    );

    // Paging by two: the same events, the same ids.
    let mut paged = Vec::new();
    let mut token = None;
    for _ in 0..10 {
        let page = filter(
            s,
            FilterLogEventsRequest {
                log_group_name: Some("g".into()),
                limit: Some(2),
                next_token: token.clone(),
                ..Default::default()
            },
        )
        .await;
        paged.extend(page.events);
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(paged, all.events);

    // Newest first.
    let newest = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            start_from_head: Some(false),
            limit: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(messages_of(&newest.events), ["a3 INFO", "b2 INFO"]);

    for (req, code) in [
        (
            FilterLogEventsRequest {
                log_group_name: Some("g".into()),
                log_stream_names: Some(vec!["a".into()]),
                log_stream_name_prefix: Some("a".into()),
                ..Default::default()
            },
            "InvalidParameterException",
        ),
        (
            FilterLogEventsRequest {
                log_group_name: Some("g".into()),
                filter_pattern: Some("{ $.a = ".into()),
                ..Default::default()
            },
            "InvalidParameterException",
        ),
        (
            FilterLogEventsRequest {
                log_group_name: Some("nope".into()),
                ..Default::default()
            },
            "ResourceNotFoundException",
        ),
    ] {
        assert_eq!(
            s.filter_log_events(&scope(), req).await.unwrap_err().code(),
            code
        );
    }
    let e = s
        .filter_log_events(
            &scope(),
            FilterLogEventsRequest {
                log_group_name: Some("g".into()),
                filter_pattern: Some("{ $.a = ".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("Invalid filter pattern"), "{e}");
}

/// What `aws logs tail --follow` does: poll from the newest timestamp seen,
/// dedupe by eventId. Every event must come out exactly once.
#[tokio::test]
async fn a_tail_follower_sees_every_event_once() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "a").await.unwrap();
    s.create_log_stream(&scope(), "g", "b").await.unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut newest: Option<(i64, HashSet<String>)> = None;
    let mut written = 0;
    for round in 0..20i64 {
        // Two streams, same timestamps on purpose.
        let t = NOW + round * 5;
        let ma = format!("a{round}");
        let mb = format!("b{round}");
        put(s, "g", "a", &[(t, &ma), (t + 1, &format!("{ma}x"))]).await;
        put(s, "g", "b", &[(t, &mb)]).await;
        written += 3;
        let mut token = None;
        loop {
            let page = filter(
                s,
                FilterLogEventsRequest {
                    log_group_name: Some("g".into()),
                    start_time: Some(newest.as_ref().map_or(NOW - 600_000, |(t, _)| *t)),
                    next_token: token.clone(),
                    limit: Some(2),
                    ..Default::default()
                },
            )
            .await;
            for e in page.events {
                let dup = newest
                    .as_ref()
                    .is_some_and(|(t, ids)| *t == e.timestamp && ids.contains(&e.event_id));
                if dup {
                    continue;
                }
                match &mut newest {
                    Some((t, ids)) if *t == e.timestamp => {
                        ids.insert(e.event_id.clone());
                    }
                    Some((t, _)) if *t > e.timestamp => {}
                    _ => newest = Some((e.timestamp, HashSet::from([e.event_id.clone()]))),
                }
                seen.push(e.message);
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
    }
    assert_eq!(seen.len(), written);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), written);
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let (token, ids) = {
        let s = LogStore::open_with(dir.path(), StoreOptions::default(), clock.clone()).unwrap();
        group(&s, "g").await;
        s.create_log_stream(&scope(), "g", "s").await.unwrap();
        s.tag_log_group(&scope(), "g", [("k".to_string(), "v".to_string())].into())
            .await
            .unwrap();
        s.put_retention_policy(&scope(), "g", 30).await.unwrap();
        let out = put(&s, "g", "s", &[(NOW - 2, "one"), (NOW - 1, "two")]).await;
        let all = filter(
            &s,
            FilterLogEventsRequest {
                log_group_name: Some("g".into()),
                ..Default::default()
            },
        )
        .await;
        s.close();
        (out.next_sequence_token.unwrap(), all.events)
    };
    let s = LogStore::open_with(dir.path(), StoreOptions::default(), clock).unwrap();
    let all = filter(
        &s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.events, ids, "same events, same ids");
    assert_eq!(s.list_tags_log_group(&scope(), "g").unwrap().len(), 1);
    let g = s
        .describe_log_groups(&scope(), &Default::default())
        .unwrap()
        .log_groups
        .remove(0);
    assert_eq!(g.retention_in_days, Some(30));
    assert!(g.stored_bytes.unwrap() > 0);
    // The token chain carries on.
    let out = s
        .put_log_events(
            &scope(),
            PutLogEventsRequest {
                log_group_name: "g".into(),
                log_stream_name: "s".into(),
                log_events: vec![InputLogEvent::new(NOW, "three")],
                sequence_token: Some(token.clone()),
            },
        )
        .await
        .unwrap();
    assert_ne!(out.next_sequence_token.as_deref(), Some(token.as_str()));
    let all = filter(
        &s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(messages_of(&all.events), ["one", "two", "three"]);
}

#[tokio::test]
async fn retention_deletes_whole_segment_files_and_hides_expired_events() {
    let f = open_with(StoreOptions {
        segment_duration: Duration::from_secs(3600),
        ..Default::default()
    });
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    // Three segments, a day apart.
    for day in 0..3 {
        f.clock.set(NOW + day * DAY);
        put(s, "g", "s", &[(NOW + day * DAY, &format!("day {day}"))]).await;
    }
    let seg_dir = f._dir.path().join("segments");
    let count_files = || -> usize {
        std::fs::read_dir(&seg_dir)
            .unwrap()
            .flat_map(|g| std::fs::read_dir(g.unwrap().path()).unwrap())
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "db")
            })
            .count()
    };
    assert_eq!(count_files(), 3);
    let before = s
        .describe_log_groups(&scope(), &Default::default())
        .unwrap()
        .log_groups[0]
        .stored_bytes
        .unwrap();

    // Without a policy nothing expires.
    let report = s.enforce_retention(NOW + 10 * DAY).await.unwrap();
    assert_eq!(report.segments_deleted, 0);

    s.put_retention_policy(&scope(), "g", 1).await.unwrap();
    let now = NOW + 2 * DAY + 1;
    f.clock.set(now);
    // Day 0 is hidden as soon as it is older than the retention period.
    let all = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(messages_of(&all.events), ["day 2"]);
    let report = s.enforce_retention(now).await.unwrap();
    assert_eq!(report.segments_deleted, 2);
    assert!(report.bytes_deleted > 0);
    assert_eq!(count_files(), 1, "whole files deleted");
    let after = s
        .describe_log_groups(&scope(), &Default::default())
        .unwrap()
        .log_groups[0]
        .stored_bytes
        .unwrap();
    assert_eq!(after, before - report.bytes_deleted as i64);
    // Writing goes on in a fresh segment when the active one expired.
    put(s, "g", "s", &[(now, "fresh")]).await;
    let all = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(messages_of(&all.events), ["day 2", "fresh"]);
}

#[tokio::test]
async fn a_deleted_stream_vanishes_and_its_frames_are_purged() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    s.create_log_stream(&scope(), "g", "keep").await.unwrap();
    for i in 0..600 {
        put(s, "g", "s", &[(NOW - 1000 + i, "doomed")]).await;
    }
    put(s, "g", "keep", &[(NOW, "kept")]).await;
    s.delete_log_stream(&scope(), "g", "s").await.unwrap();
    let all = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(messages_of(&all.events), ["kept"]);
    // A new stream of the same name starts empty.
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    let got = get(
        s,
        GetLogEventsRequest {
            start_from_head: Some(true),
            ..get_req()
        },
    )
    .await;
    assert!(got.events.is_empty());
    // The idle writer deletes the frames; the segment shrinks to the kept one.
    let db = std::fs::read_dir(f._dir.path().join("segments"))
        .unwrap()
        .flat_map(|g| std::fs::read_dir(g.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .unwrap();
    let mut remaining = usize::MAX;
    for _ in 0..200 {
        let conn = rusqlite_count(&db);
        remaining = conn;
        if remaining == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(remaining, 1, "only the kept stream's frame is left");
}

/// Frames in a segment file, read with the sqlite3 CLI-free way: the
/// crate's own dependency through a dev helper is not public, so count
/// with a plain query through `rusqlite` from the workspace.
fn rusqlite_count(db: &std::path::Path) -> usize {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("SELECT count(*) FROM frames", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers() {
    let f = open_with(StoreOptions::default());
    let s = f.store.clone();
    group(&s, "g").await;
    const STREAMS: usize = 8;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 50;
    for i in 0..STREAMS {
        s.create_log_stream(&scope(), "g", &format!("s{i}"))
            .await
            .unwrap();
    }
    let writers: Vec<_> = (0..STREAMS)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut token: Option<String> = None;
                for b in 0..BATCHES {
                    let events = (0..PER_BATCH)
                        .map(|e| {
                            InputLogEvent::new(
                                NOW - 100_000 + (b * PER_BATCH + e) as i64,
                                format!("s{i} b{b} e{e}"),
                            )
                        })
                        .collect();
                    let out = s
                        .put_log_events(
                            &scope(),
                            PutLogEventsRequest {
                                log_group_name: "g".into(),
                                log_stream_name: format!("s{i}"),
                                log_events: events,
                                sequence_token: token.clone(),
                            },
                        )
                        .await
                        .unwrap();
                    token = out.next_sequence_token;
                }
            })
        })
        .collect();
    // Readers run meanwhile and only ever see whole batches in order.
    let reader = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut polls = 0;
            loop {
                let out = s
                    .filter_log_events(
                        &scope(),
                        FilterLogEventsRequest {
                            log_group_name: Some("g".into()),
                            log_stream_names: Some(vec!["s0".into()]),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    out.events.len() % PER_BATCH,
                    0,
                    "a batch is visible whole or not at all"
                );
                for w in out.events.windows(2) {
                    assert!(w[0].timestamp <= w[1].timestamp);
                }
                polls += 1;
                if out.events.len() == BATCHES * PER_BATCH || polls > 10_000 {
                    return polls;
                }
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    assert!(reader.await.unwrap() <= 10_000);
    let mut total = 0;
    let mut token = None;
    let mut last = (i64::MIN, String::new());
    for _ in 0..100 {
        let page = s
            .filter_log_events(
                &scope(),
                FilterLogEventsRequest {
                    log_group_name: Some("g".into()),
                    next_token: token.clone(),
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for e in &page.events {
            let key = (e.timestamp, e.event_id.clone());
            assert!(key > last, "strictly ordered, no duplicates");
            last = key;
        }
        total += page.events.len();
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(total, STREAMS * BATCHES * PER_BATCH);
    let streams = s
        .describe_log_streams(
            &scope(),
            &DescribeLogStreamsRequest {
                log_group_name: Some("g".into()),
                ..Default::default()
            },
        )
        .unwrap();
    for st in streams.log_streams {
        assert_eq!(st.first_event_timestamp, Some(NOW - 100_000));
        assert_eq!(
            st.last_event_timestamp,
            Some(NOW - 100_000 + (BATCHES * PER_BATCH) as i64 - 1)
        );
    }
}

/// A selective pattern over many events: pages stop at the scan budget
/// with a token (possibly empty, as AWS allows), and paging finds all.
#[tokio::test]
async fn filter_pages_stop_at_the_scan_budget_and_resume() {
    let f = open_with(StoreOptions {
        filter_scan_budget: 50,
        ..Default::default()
    });
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    let events: Vec<(i64, String)> = (0..300)
        .map(|i| {
            (
                NOW - 1000 + i,
                if i % 100 == 99 {
                    format!("needle {i}")
                } else {
                    format!("hay {i}")
                },
            )
        })
        .collect();
    let refs: Vec<(i64, &str)> = events.iter().map(|(t, m)| (*t, m.as_str())).collect();
    put(s, "g", "s", &refs).await;
    let mut found = Vec::new();
    let mut pages = 0;
    let mut token = None;
    loop {
        let page = filter(
            s,
            FilterLogEventsRequest {
                log_group_name: Some("g".into()),
                filter_pattern: Some("needle".into()),
                next_token: token.clone(),
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        found.extend(page.events.into_iter().map(|e| e.message));
        token = page.next_token;
        if token.is_none() || pages > 100 {
            break;
        }
    }
    assert_eq!(found, ["needle 99", "needle 199", "needle 299"]);
    assert!(pages >= 6, "300 events at 50 a page: {pages} pages");
}

#[tokio::test]
async fn get_log_events_pages_hold_at_most_one_megabyte() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    let big = "x".repeat(100_000);
    for i in 0..3 {
        let events: Vec<(i64, &str)> = (0..8)
            .map(|j| (NOW - 100 + i * 10 + j, big.as_str()))
            .collect();
        put(s, "g", "s", &events).await;
    }
    let page = get(
        s,
        GetLogEventsRequest {
            start_from_head: Some(true),
            ..get_req()
        },
    )
    .await;
    let bytes: usize = page.events.iter().map(|e| e.message.len() + 26).sum();
    assert!(
        bytes <= 1_048_576 && page.events.len() == 10,
        "{} events, {bytes} bytes",
        page.events.len()
    );
    let rest = get(
        s,
        GetLogEventsRequest {
            start_from_head: Some(true),
            next_token: Some(page.next_forward_token),
            ..get_req()
        },
    )
    .await;
    assert_eq!(rest.events.len(), 10);
}

#[tokio::test]
async fn describe_log_groups_by_identifiers_and_class() {
    let f = open();
    let s = &f.store;
    group(s, "a").await;
    group(s, "b").await;
    s.create_log_group(
        &scope(),
        CreateLogGroupRequest {
            log_group_name: "ia".into(),
            log_group_class: Some(LogGroupClass::InfrequentAccess),
            kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/1".into()),
            tags: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let out = s
        .describe_log_groups(
            &scope(),
            &DescribeLogGroupsRequest {
                log_group_identifiers: Some(vec![
                    "a".into(),
                    "arn:aws:logs:us-east-1:123456789012:log-group:ia".into(),
                    "missing".into(),
                ]),
                ..Default::default()
            },
        )
        .unwrap();
    let names: Vec<_> = out
        .log_groups
        .iter()
        .map(|g| g.log_group_name.as_str())
        .collect();
    assert_eq!(names, ["a", "ia"]);
    assert_eq!(
        out.log_groups[1].kms_key_id.as_deref(),
        Some("arn:aws:kms:us-east-1:123456789012:key/1")
    );
    let ia = s
        .describe_log_groups(
            &scope(),
            &DescribeLogGroupsRequest {
                log_group_class: Some(LogGroupClass::Essentials),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        ia.log_groups.len(),
        1,
        "INFREQUENT_ACCESS and ESSENTIALS go together"
    );
    assert_eq!(s.list_tags_log_group(&scope(), "ia").unwrap().len(), 1);
    let e = s
        .create_log_group(
            &scope(),
            CreateLogGroupRequest {
                log_group_name: "aws/reserved".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}

#[tokio::test]
async fn space_delimited_and_regex_patterns_through_filter() {
    let f = open();
    let s = &f.store;
    group(s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    put(
        s,
        "g",
        "s",
        &[
            (
                NOW - 3,
                r#"10.0.0.1 - - [06/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 512"#,
            ),
            (
                NOW - 2,
                r#"10.0.0.2 - - [06/Dec/2026:10:00:01 +0000] "GET /x HTTP/1.1" 404 10"#,
            ),
            (
                NOW - 1,
                r#"10.0.0.3 - - [06/Dec/2026:10:00:02 +0000] "POST /y HTTP/1.1" 503 0"#,
            ),
        ],
    )
    .await;
    let errors = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            filter_pattern: Some("[ip, ident, user, time, request, status >= 400, bytes]".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(errors.events.len(), 2);
    let posts = filter(
        s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            filter_pattern: Some("%POST /[a-z]%".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(posts.events.len(), 1);
}

mod model {
    //! Random batches over several streams and segments, read back every
    //! way, against a sorted list.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Batch {
        stream: usize,
        start: i64,
        count: usize,
        step: i64,
        roll: bool,
    }

    fn batches() -> impl Strategy<Value = Vec<Batch>> {
        proptest::collection::vec(
            (
                0usize..3,
                0i64..400,
                1usize..12,
                0i64..30,
                proptest::bool::weighted(0.2),
            )
                .prop_map(|(stream, start, count, step, roll)| Batch {
                    stream,
                    start,
                    count,
                    step,
                    roll,
                }),
            1..25,
        )
    }

    /// (timestamp, stream, message) in the order readers must return them.
    type Event = (i64, usize, String);

    async fn all_filter(s: &LogStore, req: FilterLogEventsRequest) -> Vec<FilteredLogEvent> {
        let mut out = Vec::new();
        let mut token = None;
        for _ in 0..1000 {
            let page = s
                .filter_log_events(
                    &scope(),
                    FilterLogEventsRequest {
                        next_token: token.clone(),
                        ..req.clone()
                    },
                )
                .await
                .unwrap();
            out.extend(page.events);
            token = page.next_token;
            if token.is_none() {
                return out;
            }
        }
        panic!("paging did not end");
    }

    async fn all_get(s: &LogStore, stream: &str, limit: i32, forward: bool) -> Vec<String> {
        let req = GetLogEventsRequest {
            log_group_name: Some("g".into()),
            log_stream_name: stream.into(),
            limit: Some(limit),
            start_from_head: Some(forward),
            ..Default::default()
        };
        let mut pages: Vec<Vec<String>> = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let page = s
                .get_log_events(
                    &scope(),
                    GetLogEventsRequest {
                        next_token: token.clone(),
                        ..req.clone()
                    },
                )
                .await
                .unwrap();
            let next = if forward {
                page.next_forward_token
            } else {
                page.next_backward_token
            };
            pages.push(page.events.into_iter().map(|e| e.message).collect());
            if token.as_deref() == Some(next.as_str()) {
                if !forward {
                    pages.reverse();
                }
                return pages.concat();
            }
            token = Some(next);
        }
        panic!("paging did not end");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn every_read_agrees_with_a_sorted_model(batches in batches(), limit in 1i32..9, window in (0i64..700, 0i64..700)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let f = open_with(StoreOptions {
                    segment_duration: Duration::from_secs(1),
                    ..Default::default()
                });
                let s = &f.store;
                group(s, "g").await;
                for i in 0..3 {
                    s.create_log_stream(&scope(), "g", &format!("s{i}")).await.unwrap();
                }
                let mut model: Vec<Event> = Vec::new();
                for (b, batch) in batches.iter().enumerate() {
                    if batch.roll {
                        f.clock.advance(2_000); // the next batch opens a new segment
                    }
                    let events: Vec<(i64, String)> = (0..batch.count)
                        .map(|i| (NOW - 1000 + batch.start + i as i64 * batch.step, format!("b{b} e{i}")))
                        .collect();
                    let refs: Vec<(i64, &str)> = events.iter().map(|(t, m)| (*t, m.as_str())).collect();
                    put(s, "g", &format!("s{}", batch.stream), &refs).await;
                    model.extend(events.into_iter().map(|(t, m)| (t, batch.stream, m)));
                }
                // Sequence numbers follow put order, so a stable sort by
                // timestamp is the readers' (timestamp, sequence) order.
                model.sort_by_key(|e| e.0);
                let msgs = |events: &[Event]| events.iter().map(|e| e.2.clone()).collect::<Vec<_>>();

                let got = all_filter(s, FilterLogEventsRequest {
                    log_group_name: Some("g".into()),
                    limit: Some(limit),
                    ..Default::default()
                })
                .await;
                assert_eq!(got.iter().map(|e| e.message.clone()).collect::<Vec<_>>(), msgs(&model));
                let ids: HashSet<_> = got.iter().map(|e| &e.event_id).collect();
                assert_eq!(ids.len(), model.len());

                let newest = all_filter(s, FilterLogEventsRequest {
                    log_group_name: Some("g".into()),
                    limit: Some(limit),
                    start_from_head: Some(false),
                    ..Default::default()
                })
                .await;
                let mut reversed = msgs(&model);
                reversed.reverse();
                assert_eq!(newest.iter().map(|e| e.message.clone()).collect::<Vec<_>>(), reversed);

                let (a, b) = (NOW - 1000 + window.0.min(window.1), NOW - 1000 + window.0.max(window.1));
                let windowed = all_filter(s, FilterLogEventsRequest {
                    log_group_name: Some("g".into()),
                    log_stream_names: Some(vec!["s1".into()]),
                    start_time: Some(a),
                    end_time: Some(b),
                    limit: Some(limit),
                    ..Default::default()
                })
                .await;
                let expected: Vec<Event> = model.iter().filter(|e| e.1 == 1 && e.0 >= a && e.0 <= b).cloned().collect();
                assert_eq!(windowed.iter().map(|e| e.message.clone()).collect::<Vec<_>>(), msgs(&expected));

                for stream in 0..3 {
                    let expected: Vec<Event> = model.iter().filter(|e| e.1 == stream).cloned().collect();
                    let name = format!("s{stream}");
                    assert_eq!(all_get(s, &name, limit, true).await, msgs(&expected), "forward {name}");
                    assert_eq!(all_get(s, &name, limit, false).await, msgs(&expected), "backward {name}");
                }
            });
        }
    }
}

#[test]
fn a_store_opens_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = LogStore::open(dir.path()).unwrap();
    let second = LogStore::open(dir.path());
    let Err(LogsError::ServiceUnavailable { detail }) = second else {
        panic!("a second open of the same directory must fail");
    };
    assert!(detail.contains("open in another process"), "{detail}");
    first.close();
    drop(first);
    LogStore::open(dir.path()).unwrap();
}

#[tokio::test]
async fn deleting_a_group_removes_its_files_and_a_namesake_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    group(&s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    put(&s, "g", "s", &[(now, "old life")]).await;
    // Read once so that the readers' pool holds a connection to the segment.
    let before = filter(
        &s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(before.events.len(), 1);
    let groups = || {
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count()
    };
    assert_eq!(groups(), 1);
    s.delete_log_group(&scope(), "g").await.unwrap();
    assert_eq!(groups(), 0, "the group's directory is gone");
    let e = s
        .filter_log_events(
            &scope(),
            FilterLogEventsRequest {
                log_group_name: Some("g".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "The specified log group does not exist.");
    group(&s, "g").await;
    s.create_log_stream(&scope(), "g", "s").await.unwrap();
    put(&s, "g", "s", &[(now, "new life")]).await;
    let after = filter(
        &s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(messages_of(&after.events), ["new life"]);
    s.close();
    drop(s);
    let s = LogStore::open(dir.path()).unwrap();
    let again = filter(
        &s,
        FilterLogEventsRequest {
            log_group_name: Some("g".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(again.events, after.events);
}
