//! The metric operations against a real store file: PutMetricData,
//! GetMetricStatistics, GetMetricData, ListMetrics, roll-up and retention,
//! and reopening.

use flotilla_metrics::*;
use flotilla_model::arn::Scope;

fn scope() -> Scope {
    Scope::new("111122223333", "us-east-1")
}

/// 2026-06-12T10:00:00Z.
fn t0() -> Timestamp {
    Timestamp::from_secs(1_781_258_400)
}

fn open(dir: &tempfile::TempDir) -> MetricStore {
    MetricStore::open(
        &dir.path().join("metrics.db"),
        MetricStoreOptions::default(),
    )
    .unwrap()
}

fn datum(name: &str, value: f64, at: Timestamp) -> MetricDatum {
    MetricDatum {
        metric_name: name.into(),
        dimensions: vec![
            Dimension::new("Service", "web"),
            Dimension::new("Cluster", "prod"),
        ],
        timestamp: Some(at),
        value: Some(value),
        unit: Some(StandardUnit::Percent),
        ..Default::default()
    }
}

async fn put(store: &MetricStore, data: Vec<MetricDatum>, now: Timestamp) {
    let input = PutMetricDataInput {
        namespace: "App".into(),
        metric_data: data,
    };
    store.put_metric_data(&scope(), &input, now).await.unwrap();
}

fn stats(start: Timestamp, end: Timestamp, period: i64) -> GetMetricStatisticsInput {
    GetMetricStatisticsInput {
        namespace: "App".into(),
        metric_name: "Latency".into(),
        // The other order than they were put in: the same metric.
        dimensions: vec![
            Dimension::new("Cluster", "prod"),
            Dimension::new("Service", "web"),
        ],
        start_time: Some(start),
        end_time: Some(end),
        period: Some(period),
        statistics: vec![
            Statistic::SampleCount,
            Statistic::Average,
            Statistic::Sum,
            Statistic::Minimum,
            Statistic::Maximum,
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn statistics_per_period_and_unit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0().plus_secs(600);
    // Minute 10:01: 1, 2, 3 (Percent) and 100 (Count); minute 10:02: 10.
    let mut data = vec![
        datum("Latency", 1.0, t0().plus_secs(61)),
        datum("Latency", 2.0, t0().plus_secs(90)),
        datum("Latency", 3.0, t0().plus_secs(119)),
        datum("Latency", 10.0, t0().plus_secs(150)),
    ];
    let mut count = datum("Latency", 100.0, t0().plus_secs(70));
    count.unit = Some(StandardUnit::Count);
    data.push(count);
    put(&store, data, now).await;

    let out = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().plus_secs(300), 60), now)
        .unwrap();
    assert_eq!(out.label, "Latency");
    let points: Vec<(i64, StandardUnit, f64, f64, f64, f64, f64)> = out
        .datapoints
        .iter()
        .map(|d| {
            (
                d.timestamp.millis() - t0().millis(),
                d.unit,
                d.sample_count.unwrap(),
                d.average.unwrap(),
                d.sum.unwrap(),
                d.minimum.unwrap(),
                d.maximum.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        points,
        vec![
            (60_000, StandardUnit::Percent, 3.0, 2.0, 6.0, 1.0, 3.0),
            (60_000, StandardUnit::Count, 1.0, 100.0, 100.0, 100.0, 100.0),
            (120_000, StandardUnit::Percent, 1.0, 10.0, 10.0, 10.0, 10.0),
        ]
    );

    // Unit filter, a 5-minute period and percentiles.
    let mut input = stats(t0(), t0().plus_secs(300), 300);
    input.statistics.clear();
    input.extended_statistics = vec!["p50".into(), "p99".into(), "p0.0".into()];
    input.unit = Some(StandardUnit::Percent);
    let out = store.get_metric_statistics(&scope(), &input, now).unwrap();
    assert_eq!(out.datapoints.len(), 1);
    assert_eq!(
        out.datapoints[0].extended_statistics,
        vec![
            ("p50".into(), 2.0),
            ("p99".into(), 10.0),
            ("p0.0".into(), 1.0)
        ]
    );
    assert_eq!(out.datapoints[0].sum, None);

    // Another dimension set is another metric.
    let mut other = stats(t0(), t0().plus_secs(300), 60);
    other.dimensions.pop();
    assert!(store
        .get_metric_statistics(&scope(), &other, now)
        .unwrap()
        .datapoints
        .is_empty());
    // Another account sees nothing.
    let stranger = Scope::new("444455556666", "us-east-1");
    let out = store
        .get_metric_statistics(&stranger, &stats(t0(), t0().plus_secs(300), 60), now)
        .unwrap();
    assert!(out.datapoints.is_empty());
}

#[tokio::test]
async fn bad_queries_get_aws_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0();
    let err = store
        .get_metric_statistics(&scope(), &stats(t0().minus_secs(86_401), t0(), 60), now)
        .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterCombination");
    assert_eq!(
        err.to_string(),
        "You have requested up to 1,441 datapoints, which exceeds the limit of 1,440. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
    );
    assert!(store
        .get_metric_statistics(&scope(), &stats(t0().minus_secs(86_400), t0(), 60), now)
        .is_ok());
    let err = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().minus_secs(60), 60), now)
        .unwrap_err();
    assert!(err.to_string().contains("StartTime"), "{err}");
    let err = store
        .get_metric_statistics(&scope(), &stats(t0().minus_secs(600), t0(), 45), now)
        .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterValue");
    let mut both = stats(t0().minus_secs(600), t0(), 60);
    both.extended_statistics = vec!["p90".into()];
    assert_eq!(
        store
            .get_metric_statistics(&scope(), &both, now)
            .unwrap_err()
            .code(),
        "InvalidParameterCombination"
    );
    let mut bad = stats(t0().minus_secs(600), t0(), 60);
    bad.statistics.clear();
    bad.extended_statistics = vec!["p100.5".into()];
    let err = store
        .get_metric_statistics(&scope(), &bad, now)
        .unwrap_err();
    assert!(
        err.to_string().contains("ExtendedStatistics.member.1"),
        "{err}"
    );

    let reserved = PutMetricDataInput {
        namespace: "AWS/ECS".into(),
        metric_data: vec![datum("CPU", 1.0, now)],
    };
    assert_eq!(
        store
            .put_metric_data(&scope(), &reserved, now)
            .await
            .unwrap_err()
            .code(),
        "InvalidParameterValue"
    );
    store
        .put_internal_metric_data(&scope(), &reserved, now)
        .await
        .unwrap();
    let nan = PutMetricDataInput {
        namespace: "App".into(),
        metric_data: vec![datum("CPU", f64::NAN, now)],
    };
    assert!(store.put_metric_data(&scope(), &nan, now).await.is_err());
    assert_eq!(store.series_count(), 1, "a rejected call writes nothing");
}

#[tokio::test]
async fn high_resolution_data_and_sub_minute_periods() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0().plus_secs(120);
    let data: Vec<MetricDatum> = (0..60)
        .map(|s| {
            let mut d = datum("Latency", f64::from(s), t0().plus_secs(i64::from(s)));
            d.storage_resolution = Some(1);
            d
        })
        .collect();
    put(&store, data, now).await;
    let out = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().plus_secs(60), 10), now)
        .unwrap();
    let sums: Vec<f64> = out.datapoints.iter().map(|d| d.sum.unwrap()).collect();
    // 0..9, 10..19, …
    assert_eq!(sums, vec![45.0, 145.0, 245.0, 345.0, 445.0, 545.0]);
    let out = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().plus_secs(5), 1), now)
        .unwrap();
    assert_eq!(out.datapoints.len(), 5);
    // Standard-resolution data is stored per minute: a 10 s period finds it
    // at the start of its minute.
    put(&store, vec![datum("Latency", 7.0, t0().plus_secs(75))], now).await;
    let out = store
        .get_metric_statistics(
            &scope(),
            &stats(t0().plus_secs(60), t0().plus_secs(120), 10),
            now,
        )
        .unwrap();
    assert_eq!(out.datapoints.len(), 1);
    assert_eq!(out.datapoints[0].timestamp, t0().plus_secs(60));
}

#[tokio::test]
async fn roll_up_keeps_the_statistics_and_retention_drops_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0().plus_secs(3600);
    // One high-resolution sample a second for an hour: 0, 1, …, 3599.
    for minute in 0..60 {
        let data: Vec<MetricDatum> = (0..60)
            .map(|s| {
                let second = minute * 60 + s;
                let mut d = datum("Latency", second as f64, t0().plus_secs(second));
                d.storage_resolution = Some(1);
                d
            })
            .collect();
        put(&store, data, now).await;
    }
    let hour = |at: Timestamp, period: i64| {
        let mut input = stats(t0(), t0().plus_secs(3600), period);
        input.statistics = vec![Statistic::SampleCount, Statistic::Sum, Statistic::Maximum];
        store.get_metric_statistics(&scope(), &input, at).unwrap()
    };
    let before = hour(now, 60);
    assert_eq!(before.datapoints.len(), 60);

    // Four hours later the raw hour is rolled into minutes.
    let later = t0().plus_secs(4 * 3600 + 60);
    let report = store.maintain(later).await.unwrap();
    assert_eq!(report.rows_rolled, 3600);
    assert_eq!(report.tables_dropped, 6); // six 10-minute partitions
    let after = hour(later, 60);
    assert_eq!(after.datapoints, before.datapoints);
    // Sub-minute periods no longer return data that old.
    assert!(hour(later, 10).datapoints.is_empty());
    let mut p = stats(t0(), t0().plus_secs(3600), 3600);
    p.statistics.clear();
    p.extended_statistics = vec!["p50".into(), "p90".into()];
    let pct = store.get_metric_statistics(&scope(), &p, later).unwrap();
    assert_eq!(
        pct.datapoints[0].extended_statistics,
        vec![("p50".into(), 1799.0), ("p90".into(), 3239.0)]
    );

    // After 15 days, 5-minute data; after 63 days, hourly; after 455, gone.
    let day = 86_400;
    let report = store.maintain(t0().plus_secs(17 * day)).await.unwrap();
    assert!(report.rows_rolled >= 60, "{report:?}");
    let five = hour(t0().plus_secs(17 * day), 300);
    assert_eq!(five.datapoints.len(), 12);
    assert_eq!(
        five.datapoints
            .iter()
            .map(|d| d.sample_count.unwrap())
            .sum::<f64>(),
        3600.0
    );
    assert!(hour(t0().plus_secs(17 * day), 60).datapoints.is_empty());
    store.maintain(t0().plus_secs(80 * day)).await.unwrap();
    let hourly = hour(t0().plus_secs(80 * day), 3600);
    assert_eq!(hourly.datapoints.len(), 1);
    assert_eq!(
        hourly.datapoints[0].sum,
        Some((0..3600).map(f64::from).sum())
    );
    assert_eq!(hourly.datapoints[0].maximum, Some(3599.0));
    // 3,600 distinct values are stored quantized: within 0.5 %.
    let pct = store
        .get_metric_statistics(&scope(), &p, t0().plus_secs(80 * day))
        .unwrap();
    let got = &pct.datapoints[0].extended_statistics;
    for ((name, value), exact) in got.iter().zip([1799.0, 3239.0]) {
        assert!(
            (value - exact).abs() / exact < 0.005,
            "{name}: {value} vs {exact}"
        );
    }
    let report = store.maintain(t0().plus_secs(500 * day)).await.unwrap();
    assert!(
        report.tables_dropped >= 1 && report.expired >= 1,
        "{report:?}"
    );
    assert!(hour(t0().plus_secs(500 * day), 3600).datapoints.is_empty());
    assert_eq!(store.series_count(), 0);
}

#[tokio::test]
async fn late_data_lands_in_the_tier_that_keeps_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0().plus_secs(10 * 86_400);
    store.maintain(now).await.unwrap();
    // Ten days old, high resolution: below the raw floor, kept per minute.
    let mut d = datum("Latency", 4.0, t0().plus_secs(5));
    d.storage_resolution = Some(1);
    put(
        &store,
        vec![d, datum("Latency", 6.0, t0().plus_secs(30))],
        now,
    )
    .await;
    let out = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().plus_secs(60), 60), now)
        .unwrap();
    assert_eq!(out.datapoints.len(), 1);
    assert_eq!(out.datapoints[0].sum, Some(10.0));
}

#[tokio::test]
async fn metric_data_with_math_scan_order_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0().plus_secs(600);
    let mut data = Vec::new();
    for m in 0..5 {
        let at = t0().plus_secs(60 * m);
        data.push(datum("Errors", m as f64, at));
        data.push(datum("Requests", 10.0, at));
    }
    put(&store, data, now).await;
    let metric = |id: &str, name: &str, ret: bool| MetricDataQuery {
        id: id.into(),
        metric_stat: Some(MetricStat {
            namespace: "App".into(),
            metric_name: name.into(),
            dimensions: vec![
                Dimension::new("Service", "web"),
                Dimension::new("Cluster", "prod"),
            ],
            period: 60,
            stat: "Sum".into(),
            unit: None,
        }),
        return_data: Some(ret),
        ..Default::default()
    };
    let mut input = GetMetricDataInput {
        metric_data_queries: vec![
            metric("errors", "Errors", true),
            metric("requests", "Requests", false),
            MetricDataQuery {
                id: "rate".into(),
                expression: Some("100 * errors / requests".into()),
                label: Some("Error rate".into()),
                ..Default::default()
            },
            MetricDataQuery {
                id: "total".into(),
                expression: Some("SUM(METRICS())".into()),
                ..Default::default()
            },
        ],
        start_time: Some(t0()),
        end_time: Some(t0().plus_secs(300)),
        ..Default::default()
    };
    let out = store.get_metric_data(&scope(), &input, now).unwrap();
    assert_eq!(out.next_token, None);
    let ids: Vec<&str> = out
        .metric_data_results
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, ["errors", "rate", "total"]);
    let rate = &out.metric_data_results[1];
    assert_eq!(rate.label, "Error rate");
    assert_eq!(rate.values, vec![40.0, 30.0, 20.0, 10.0, 0.0]); // newest first
    assert_eq!(rate.timestamps[0], t0().plus_secs(240));
    assert_eq!(out.metric_data_results[0].label, "Errors");
    assert_eq!(
        out.metric_data_results[2].values,
        vec![14.0, 13.0, 12.0, 11.0, 10.0]
    );
    assert!(out
        .metric_data_results
        .iter()
        .all(|r| r.status_code == StatusCode::Complete));

    // Pages of 4 datapoints, oldest first.
    input.scan_by = Some(ScanBy::TimestampAscending);
    input.max_datapoints = Some(4);
    let mut pages = Vec::new();
    let mut token = None;
    for _ in 0..10 {
        input.next_token = token.clone();
        let page = store.get_metric_data(&scope(), &input, now).unwrap();
        pages.push(page.metric_data_results.clone());
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages.len(), 4); // 15 datapoints in pages of 4
    let mut rate_values = Vec::new();
    for page in &pages {
        assert!(page.iter().map(|r| r.values.len()).sum::<usize>() <= 4);
        for r in page.iter().filter(|r| r.id == "rate") {
            rate_values.extend(r.values.iter().copied());
        }
    }
    assert_eq!(rate_values, vec![0.0, 10.0, 20.0, 30.0, 40.0]);
    assert_eq!(pages[0][0].status_code, StatusCode::PartialData);

    // A token from another request is refused.
    input.next_token = Some(token_of_other_request(&store, now));
    assert_eq!(
        store
            .get_metric_data(&scope(), &input, now)
            .unwrap_err()
            .code(),
        "InvalidNextToken"
    );

    // Bad expressions name the query.
    let bad = GetMetricDataInput {
        metric_data_queries: vec![MetricDataQuery {
            id: "e1".into(),
            expression: Some("SUM(".into()),
            ..Default::default()
        }],
        start_time: Some(t0()),
        end_time: Some(now),
        ..Default::default()
    };
    let err = store.get_metric_data(&scope(), &bad, now).unwrap_err();
    assert!(err.to_string().contains("e1"), "{err}");
}

fn token_of_other_request(store: &MetricStore, now: Timestamp) -> String {
    let other = GetMetricDataInput {
        metric_data_queries: vec![MetricDataQuery {
            id: "m".into(),
            metric_stat: Some(MetricStat {
                namespace: "App".into(),
                metric_name: "Errors".into(),
                dimensions: vec![
                    Dimension::new("Service", "web"),
                    Dimension::new("Cluster", "prod"),
                ],
                period: 60,
                stat: "Sum".into(),
                unit: None,
            }),
            ..Default::default()
        }],
        start_time: Some(t0()),
        end_time: Some(t0().plus_secs(300)),
        max_datapoints: Some(1),
        ..Default::default()
    };
    store
        .get_metric_data(&scope(), &other, now)
        .unwrap()
        .next_token
        .unwrap()
}

#[tokio::test]
async fn list_metrics_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0();
    // 600 services, one metric each, and one old metric.
    for chunk in 0..6 {
        let data: Vec<MetricDatum> = (0..100)
            .map(|i| MetricDatum {
                metric_name: "Requests".into(),
                dimensions: vec![Dimension::new(
                    "Service",
                    format!("svc-{:03}", chunk * 100 + i),
                )],
                value: Some(1.0),
                timestamp: Some(now),
                ..Default::default()
            })
            .collect();
        put(&store, data, now).await;
    }
    put(
        &store,
        vec![datum("Old", 1.0, now.minus_secs(5 * 3600))],
        now,
    )
    .await;

    let mut input = ListMetricsInput {
        namespace: Some("App".into()),
        ..Default::default()
    };
    let first = store.list_metrics(&scope(), &input, now).unwrap();
    assert_eq!(first.metrics.len(), 500);
    assert_eq!(first.metrics[0].metric_name, "Old");
    input.next_token = first.next_token.clone();
    let second = store.list_metrics(&scope(), &input, now).unwrap();
    assert_eq!(second.metrics.len(), 101);
    assert_eq!(second.next_token, None);
    assert_eq!(
        second.metrics.last().unwrap().dimensions[0].value,
        "svc-599"
    );

    let filtered = ListMetricsInput {
        dimensions: vec![DimensionFilter {
            name: "Service".into(),
            value: Some("svc-042".into()),
        }],
        ..Default::default()
    };
    let out = store.list_metrics(&scope(), &filtered, now).unwrap();
    assert_eq!(out.metrics.len(), 1);
    let by_name = ListMetricsInput {
        dimensions: vec![DimensionFilter {
            name: "Cluster".into(),
            value: None,
        }],
        ..Default::default()
    };
    assert_eq!(
        store
            .list_metrics(&scope(), &by_name, now)
            .unwrap()
            .metrics
            .len(),
        1
    );
    let mut recent = ListMetricsInput {
        recently_active: Some(RecentlyActive::Pt3h),
        ..Default::default()
    };
    let page = store.list_metrics(&scope(), &recent, now).unwrap();
    assert_eq!(page.metrics.len(), 500);
    recent.next_token = page.next_token;
    let page = store.list_metrics(&scope(), &recent, now).unwrap();
    assert_eq!(
        page.metrics.len(),
        100,
        "the old metric is not recently active"
    );
    assert!(page.metrics.iter().all(|m| m.metric_name == "Requests"));
    // Two weeks without data: no longer listed.
    let later = ListMetricsInput::default();
    assert!(store
        .list_metrics(&scope(), &later, now.plus_secs(15 * 86_400))
        .unwrap()
        .metrics
        .is_empty());
    let bad = ListMetricsInput {
        next_token: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(
        store.list_metrics(&scope(), &bad, now).unwrap_err().code(),
        "InvalidNextToken"
    );
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0().plus_secs(600);
    {
        let store = open(&dir);
        put(&store, vec![datum("Latency", 5.0, t0().plus_secs(60))], now).await;
        store.close();
    }
    let store = open(&dir);
    let out = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().plus_secs(300), 60), now)
        .unwrap();
    assert_eq!(out.datapoints.len(), 1);
    assert_eq!(out.datapoints[0].sum, Some(5.0));
    // New writes after the reopen extend the same series.
    put(&store, vec![datum("Latency", 1.0, t0().plus_secs(60))], now).await;
    let out = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().plus_secs(300), 60), now)
        .unwrap();
    assert_eq!(out.datapoints[0].sum, Some(6.0));
    assert_eq!(store.series_count(), 1);
}

#[tokio::test]
async fn concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0().plus_secs(600);
    let mut tasks = Vec::new();
    for task in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let d = datum("Latency", f64::from(task * 1000 + i), t0().plus_secs(60));
                let input = PutMetricDataInput {
                    namespace: "App".into(),
                    metric_data: vec![d],
                };
                store.put_metric_data(&scope(), &input, now).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let out = store
        .get_metric_statistics(&scope(), &stats(t0(), t0().plus_secs(300), 60), now)
        .unwrap();
    assert_eq!(out.datapoints[0].sample_count, Some(800.0));
    let expected: f64 = (0..16)
        .flat_map(|t| (0..50).map(move |i| f64::from(t * 1000 + i)))
        .sum();
    assert_eq!(out.datapoints[0].sum, Some(expected));
}
