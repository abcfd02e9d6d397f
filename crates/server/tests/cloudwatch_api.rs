//! The CloudWatch API on each protocol its clients speak: the real AWS CLI
//! v1 (AWS JSON 1.0 with `x-amzn-query-mode`), the official AWS SDK for
//! Rust (RPC v2 CBOR), and a raw signed Query form; every operation, and
//! the model's errors for bad input (which change nothing).

mod common;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_sdk_cloudwatch::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_cloudwatch::config::{
    BehaviorVersion, ConfigBag, Credentials as SdkCredentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_cloudwatch::error::{BoxError, ProvideErrorMetadata};
use aws_sdk_cloudwatch::types as cwt;
use axum::http::Request;
use common::{Principal, TestServer, ALICE, BOB, REGION};
use serde_json::Value;

/// What one AWS CLI run produced.
struct Run {
    ok: bool,
    stdout: Value,
    stderr: String,
}

/// `aws cloudwatch ARGS… --output json` against `server` as `who`.
async fn cw(server: &TestServer, who: &Principal, args: &[&str]) -> Run {
    let (ok, stdout, stderr) = server
        .aws_env(who, "cloudwatch", args, &[("AWS_MAX_ATTEMPTS", "1")])
        .await;
    Run { ok, stdout, stderr }
}

async fn ok(server: &TestServer, args: &[&str]) -> Value {
    let run = cw(server, &ALICE, args).await;
    assert!(run.ok, "aws cloudwatch {args:?} failed: {}", run.stderr);
    run.stdout
}

/// The CLI's error for a call that must fail with `code`.
async fn fails(server: &TestServer, args: &[&str], code: &str) -> String {
    let run = cw(server, &ALICE, args).await;
    assert!(
        !run.ok,
        "aws cloudwatch {args:?} should fail: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!("({code})")),
        "aws cloudwatch {args:?}: expected {code}, got {}",
        run.stderr
    );
    run.stderr
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every operation through the real AWS CLI, in the order a user meets
/// them; and the protocol it speaks (JSON 1.0, query mode).
#[tokio::test]
async fn cli_drives_every_operation() {
    let server = TestServer::start().await;
    let now = epoch();
    let (start, end) = ((now - 600).to_string(), (now + 120).to_string());

    // The CLI v1 speaks AWS JSON 1.0 in query-compatible mode.
    let run = cw(&server, &ALICE, &["list-metrics", "--debug"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("GraniteServiceVersion20100801.ListMetrics")
            && run.stderr.contains("x-amz-json-1.0"),
        "the CLI did not send JSON 1.0: {}",
        &run.stderr[..run.stderr.len().min(4000)]
    );

    ok(
        &server,
        &[
            "put-metric-data",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--value",
            "42",
            "--unit",
            "Milliseconds",
            "--dimensions",
            "Service=web",
        ],
    )
    .await;
    let listed = ok(&server, &["list-metrics", "--namespace", "Flotilla/Test"]).await;
    assert_eq!(listed["Metrics"][0]["MetricName"], "Latency", "{listed}");
    assert_eq!(
        listed["Metrics"][0]["Dimensions"][0],
        serde_json::json!({"Name": "Service", "Value": "web"})
    );

    let stats = ok(
        &server,
        &[
            "get-metric-statistics",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--dimensions",
            "Name=Service,Value=web",
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            "60",
            "--statistics",
            "Sum",
            "SampleCount",
            "Maximum",
        ],
    )
    .await;
    assert_eq!(stats["Label"], "Latency");
    let point = &stats["Datapoints"][0];
    assert_eq!(point["Sum"], 42.0, "{stats}");
    assert_eq!(point["SampleCount"], 1.0);
    assert_eq!(point["Unit"], "Milliseconds");

    let queries = r#"[{"Id":"m1","MetricStat":{"Metric":{"Namespace":"Flotilla/Test","MetricName":"Latency","Dimensions":[{"Name":"Service","Value":"web"}]},"Period":60,"Stat":"Sum"},"ReturnData":false},{"Id":"double","Expression":"m1 * 2","Label":"twice"}]"#;
    let data = ok(
        &server,
        &[
            "get-metric-data",
            "--metric-data-queries",
            queries,
            "--start-time",
            &start,
            "--end-time",
            &end,
        ],
    )
    .await;
    let results = data["MetricDataResults"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{data}");
    assert_eq!(results[0]["Id"], "double");
    assert_eq!(results[0]["Label"], "twice");
    assert_eq!(results[0]["Values"], serde_json::json!([84.0]));
    assert_eq!(results[0]["StatusCode"], "Complete");

    ok(
        &server,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "cli-alarm",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--dimensions",
            "Name=Service,Value=web",
            "--statistic",
            "Average",
            "--period",
            "60",
            "--evaluation-periods",
            "2",
            "--datapoints-to-alarm",
            "1",
            "--threshold",
            "100",
            "--comparison-operator",
            "GreaterThanThreshold",
            "--treat-missing-data",
            "notBreaching",
            "--alarm-actions",
            "arn:aws:autoscaling:us-east-1:111111111111:scalingPolicy:x:resource/ecs/service/c/web:policyName/out",
            "--tags",
            "Key=team,Value=core",
        ],
    )
    .await;
    let alarms = ok(&server, &["describe-alarms", "--alarm-names", "cli-alarm"]).await;
    let alarm = &alarms["MetricAlarms"][0];
    assert_eq!(alarm["AlarmName"], "cli-alarm", "{alarms}");
    assert_eq!(alarm["Threshold"], 100.0);
    assert_eq!(alarm["EvaluationPeriods"], 2);
    assert_eq!(alarm["DatapointsToAlarm"], 1);
    assert_eq!(alarm["TreatMissingData"], "notBreaching");
    assert_eq!(alarm["ActionsEnabled"], true);
    let arn = alarm["AlarmArn"].as_str().unwrap().to_string();
    assert_eq!(
        arn,
        format!(
            "arn:aws:cloudwatch:{REGION}:{}:alarm:cli-alarm",
            ALICE.account
        )
    );
    assert!(
        ["OK", "INSUFFICIENT_DATA"].contains(&alarm["StateValue"].as_str().unwrap()),
        "{alarm}"
    );

    let for_metric = ok(
        &server,
        &[
            "describe-alarms-for-metric",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--dimensions",
            "Name=Service,Value=web",
        ],
    )
    .await;
    assert_eq!(for_metric["MetricAlarms"][0]["AlarmName"], "cli-alarm");
    let other = ok(
        &server,
        &[
            "describe-alarms-for-metric",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Errors",
        ],
    )
    .await;
    assert_eq!(other["MetricAlarms"], serde_json::json!([]));

    ok(
        &server,
        &[
            "set-alarm-state",
            "--alarm-name",
            "cli-alarm",
            "--state-value",
            "ALARM",
            "--state-reason",
            "testing the pager",
        ],
    )
    .await;
    // The next evaluation (at the next minute) may already have set it
    // back from the data: the history below shows the change either way.
    let alarms = ok(&server, &["describe-alarms", "--alarm-names", "cli-alarm"]).await;
    let state = alarms["MetricAlarms"][0]["StateValue"]
        .as_str()
        .unwrap()
        .to_string();
    if state == "ALARM" {
        assert_eq!(
            alarms["MetricAlarms"][0]["StateReason"],
            "testing the pager"
        );
    }
    let by_state = ok(&server, &["describe-alarms", "--state-value", &state]).await;
    assert_eq!(by_state["MetricAlarms"][0]["AlarmName"], "cli-alarm");
    let other = if state == "ALARM" { "OK" } else { "ALARM" };
    let by_other = ok(&server, &["describe-alarms", "--state-value", other]).await;
    assert_eq!(by_other["MetricAlarms"], serde_json::json!([]));

    ok(
        &server,
        &["disable-alarm-actions", "--alarm-names", "cli-alarm"],
    )
    .await;
    let alarms = ok(&server, &["describe-alarms", "--alarm-name-prefix", "cli-"]).await;
    assert_eq!(alarms["MetricAlarms"][0]["ActionsEnabled"], false);
    ok(
        &server,
        &["enable-alarm-actions", "--alarm-names", "cli-alarm"],
    )
    .await;
    let alarms = ok(&server, &["describe-alarms", "--alarm-names", "cli-alarm"]).await;
    assert_eq!(alarms["MetricAlarms"][0]["ActionsEnabled"], true);

    let history = ok(
        &server,
        &["describe-alarm-history", "--alarm-name", "cli-alarm"],
    )
    .await;
    let kinds: Vec<&str> = history["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["HistoryItemType"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"ConfigurationUpdate"), "{history}");
    assert!(kinds.contains(&"StateUpdate"), "{history}");
    let updates = ok(
        &server,
        &[
            "describe-alarm-history",
            "--alarm-name",
            "cli-alarm",
            "--history-item-type",
            "StateUpdate",
        ],
    )
    .await;
    assert!(
        updates["AlarmHistoryItems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["HistorySummary"].as_str().unwrap().ends_with("to ALARM")),
        "{updates}"
    );

    let tags = ok(&server, &["list-tags-for-resource", "--resource-arn", &arn]).await;
    assert_eq!(
        tags["Tags"],
        serde_json::json!([{"Key": "team", "Value": "core"}])
    );
    ok(
        &server,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "Key=tier,Value=1",
        ],
    )
    .await;
    ok(
        &server,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
        ],
    )
    .await;
    let tags = ok(&server, &["list-tags-for-resource", "--resource-arn", &arn]).await;
    assert_eq!(
        tags["Tags"],
        serde_json::json!([{"Key": "tier", "Value": "1"}])
    );

    // Another account sees none of it.
    let bob = cw(&server, &BOB, &["describe-alarms"]).await;
    assert!(bob.ok, "{}", bob.stderr);
    assert_eq!(bob.stdout["MetricAlarms"], serde_json::json!([]));

    ok(&server, &["delete-alarms", "--alarm-names", "cli-alarm"]).await;
    let alarms = ok(&server, &["describe-alarms"]).await;
    assert_eq!(alarms["MetricAlarms"], serde_json::json!([]));
}

/// Bad input gets the model's error (code and message naming the field)
/// and changes nothing.
#[tokio::test]
async fn cli_bad_input_gets_the_models_errors() {
    let server = TestServer::start().await;
    let now = epoch();
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
    let e = fails(
        &server,
        &[
            "put-metric-data",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            "CPUUtilization",
            "--value",
            "1",
        ],
        "InvalidParameterValue",
    )
    .await;
    assert!(e.contains("Namespace"), "{e}");
    let listed = ok(&server, &["list-metrics"]).await;
    assert_eq!(
        listed["Metrics"],
        serde_json::json!([]),
        "nothing was written"
    );

    let e = fails(
        &server,
        &[
            "get-metric-statistics",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            "7",
            "--statistics",
            "Average",
        ],
        "InvalidParameterValue",
    )
    .await;
    assert!(e.contains("Period"), "{e}");

    // A value outside the model's enum names the member and the values.
    let e = fails(
        &server,
        &[
            "get-metric-statistics",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            "60",
            "--statistics",
            "Median",
        ],
        "InvalidParameterValue",
    )
    .await;
    assert!(
        e.contains("Statistics.member.1") && e.contains("SampleCount"),
        "{e}"
    );
    let e = fails(
        &server,
        &[
            "put-metric-data",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--value",
            "1",
            "--unit",
            "Furlongs",
        ],
        "InvalidParameterValue",
    )
    .await;
    assert!(e.contains("Unit"), "{e}");

    let e = fails(
        &server,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "bad",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--statistic",
            "Average",
            "--extended-statistic",
            "p90",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanThreshold",
        ],
        "InvalidParameterCombination",
    )
    .await;
    assert!(e.contains("ExtendedStatistic"), "{e}");
    fails(
        &server,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "bad",
            "--namespace",
            "Flotilla/Test",
            "--metric-name",
            "Latency",
            "--statistic",
            "Average",
            "--period",
            "45",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanThreshold",
        ],
        "InvalidParameterValue",
    )
    .await;
    let alarms = ok(&server, &["describe-alarms"]).await;
    assert_eq!(
        alarms["MetricAlarms"],
        serde_json::json!([]),
        "no alarm was made"
    );

    let e = fails(
        &server,
        &[
            "set-alarm-state",
            "--alarm-name",
            "nope",
            "--state-value",
            "OK",
            "--state-reason",
            "x",
        ],
        "ResourceNotFound",
    )
    .await;
    assert!(e.contains("nope"), "{e}");
    fails(
        &server,
        &[
            "list-tags-for-resource",
            "--resource-arn",
            &format!("arn:aws:cloudwatch:{REGION}:{}:alarm:nope", ALICE.account),
        ],
        "ResourceNotFoundException",
    )
    .await;
    fails(
        &server,
        &["describe-alarms", "--next-token", "not-a-token"],
        "InvalidNextToken",
    )
    .await;
    fails(
        &server,
        &[
            "get-metric-data",
            "--metric-data-queries",
            r#"[{"Id":"Bad-Id","Expression":"1"}]"#,
            "--start-time",
            &start,
            "--end-time",
            &end,
        ],
        "InvalidParameterValue",
    )
    .await;
}

/// Records the `smithy-protocol` and `content-encoding` headers of each
/// request the SDK sends.
#[derive(Debug, Default, Clone)]
struct SeenProtocol(Arc<Mutex<Vec<(String, String)>>>);

impl Intercept for SeenProtocol {
    fn name(&self) -> &'static str {
        "SeenProtocol"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request().headers();
        let protocol = headers.get("smithy-protocol").unwrap_or("none").to_string();
        let encoding = headers
            .get("content-encoding")
            .unwrap_or("none")
            .to_string();
        self.0.lock().unwrap().push((protocol, encoding));
        Ok(())
    }
}

fn sdk(server: &TestServer, seen: &SeenProtocol) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(Region::new(REGION))
        .credentials_provider(SdkCredentials::new(
            ALICE.access_key_id,
            ALICE.secret,
            None,
            None,
            "test",
        ))
        .interceptor(seen.clone())
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

/// The official SDK (RPC v2 CBOR): put, get, alarms, and errors it reads
/// by their Query codes.
#[tokio::test]
async fn sdk_speaks_cbor_for_metrics_and_alarms() {
    let server = TestServer::start().await;
    let seen = SeenProtocol::default();
    let client = sdk(&server, &seen);
    let now = aws_sdk_cloudwatch::primitives::DateTime::from_secs(epoch() as i64);
    let dim = cwt::Dimension::builder().name("Host").value("a").build();
    let mut put = client.put_metric_data().namespace("Flotilla/Sdk");
    for v in [10.0, 20.0, 30.0] {
        put = put.metric_data(
            cwt::MetricDatum::builder()
                .metric_name("Queue")
                .dimensions(dim.clone())
                .value(v)
                .unit(cwt::StandardUnit::Count)
                .storage_resolution(1)
                .timestamp(now)
                .build(),
        );
    }
    put.send().await.expect("put-metric-data");
    let stats = client
        .get_metric_statistics()
        .namespace("Flotilla/Sdk")
        .metric_name("Queue")
        .dimensions(dim.clone())
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            epoch() as i64 - 600,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            epoch() as i64 + 60,
        ))
        .period(60)
        .statistics(cwt::Statistic::Average)
        .statistics(cwt::Statistic::Maximum)
        .send()
        .await
        .expect("get-metric-statistics");
    let points = stats.datapoints();
    assert_eq!(points.len(), 1, "{stats:?}");
    assert_eq!(points[0].average(), Some(20.0));
    assert_eq!(points[0].maximum(), Some(30.0));
    assert_eq!(points[0].unit(), Some(&cwt::StandardUnit::Count));

    client
        .put_metric_alarm()
        .alarm_name("sdk-alarm")
        .namespace("Flotilla/Sdk")
        .metric_name("Queue")
        .dimensions(dim.clone())
        .statistic(cwt::Statistic::Maximum)
        .period(10)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(cwt::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("put-metric-alarm");
    let described = client
        .describe_alarms()
        .alarm_names("sdk-alarm")
        .send()
        .await
        .expect("describe-alarms");
    let alarm = &described.metric_alarms()[0];
    assert_eq!(alarm.alarm_name(), Some("sdk-alarm"));
    assert_eq!(alarm.period(), Some(10));
    assert_eq!(
        alarm.comparison_operator(),
        Some(&cwt::ComparisonOperator::GreaterThanThreshold)
    );

    let err = client
        .set_alarm_state()
        .alarm_name("missing")
        .state_value(cwt::StateValue::Ok)
        .state_reason("x")
        .send()
        .await
        .expect_err("no such alarm");
    assert_eq!(err.code(), Some("ResourceNotFound"), "{err:?}");
    let err = client
        .put_metric_data()
        .namespace("AWS/EC2")
        .metric_data(
            cwt::MetricDatum::builder()
                .metric_name("x")
                .value(1.0)
                .build(),
        )
        .send()
        .await
        .expect_err("reserved namespace");
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains("Namespace"),
        "{err:?}"
    );

    let seen = seen.0.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|(p, _)| p == "rpc-v2-cbor"),
        "the SDK did not speak CBOR: {seen:?}"
    );
}

/// A full PutMetricData batch (1,000 metrics, which the SDK gzips) is taken
/// whole; one over the limit is refused and writes nothing.
#[tokio::test]
async fn sdk_full_batches_are_compressed_and_bounded() {
    let server = TestServer::start().await;
    let seen = SeenProtocol::default();
    let client = sdk(&server, &seen);
    let datum = |i: usize| {
        cwt::MetricDatum::builder()
            .metric_name("Batch")
            .dimensions(
                cwt::Dimension::builder()
                    .name("Shard")
                    .value(format!("shard-{i:04}"))
                    .build(),
            )
            .value(i as f64)
            .build()
    };
    let full: Vec<_> = (0..1000).map(datum).collect();
    client
        .put_metric_data()
        .namespace("Flotilla/Batch")
        .set_metric_data(Some(full))
        .send()
        .await
        .expect("a batch of 1,000");
    let mut listed = 0;
    let mut token = None;
    for _ in 0..10 {
        let page = client
            .list_metrics()
            .namespace("Flotilla/Batch")
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        listed += page.metrics().len();
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(listed, 1000);
    assert!(
        seen.0.lock().unwrap()[0].1 == "gzip",
        "the SDK sent the batch uncompressed: {seen:?}"
    );
    let over: Vec<_> = (1000..2001).map(datum).collect();
    let err = client
        .put_metric_data()
        .namespace("Flotilla/Batch")
        .set_metric_data(Some(over))
        .send()
        .await
        .expect_err("1,001 metrics");
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    let page = client
        .list_metrics()
        .namespace("Flotilla/Batch")
        .dimensions(
            cwt::DimensionFilter::builder()
                .name("Shard")
                .value("shard-1500")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(page.metrics().is_empty(), "the refused batch wrote nothing");
}

/// The Query protocol (what older SDKs send): a signed form, XML back,
/// and an XML error with the Query code.
#[tokio::test]
async fn query_forms_get_xml() {
    let server = TestServer::start().await;
    let client = server
        .raw(&ALICE)
        .for_service("monitoring", "GraniteServiceVersion20100801");
    let form = |body: &str| {
        let mut req = Request::builder()
            .method("POST")
            .uri(format!("{}/", server.endpoint))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.as_bytes().to_vec())
            .unwrap();
        client.sign(&mut req, SystemTime::now()).unwrap();
        req
    };
    let r = client
        .send(form(
            "Action=PutMetricData&Version=2010-08-01&Namespace=Flotilla%2FQuery\
             &MetricData.member.1.MetricName=Hits&MetricData.member.1.Value=3\
             &MetricData.member.1.Dimensions.member.1.Name=Page\
             &MetricData.member.1.Dimensions.member.1.Value=home",
        ))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{body}");
    assert!(body.contains("<PutMetricDataResponse"), "{body}");

    let r = client
        .send(form(
            "Action=ListMetrics&Version=2010-08-01&Namespace=Flotilla%2FQuery",
        ))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{body}");
    assert!(body.contains("<ListMetricsResult>"), "{body}");
    assert!(body.contains("<MetricName>Hits</MetricName>"), "{body}");
    assert!(body.contains("<Value>home</Value>"), "{body}");

    let r = client
        .send(form(
            "Action=SetAlarmState&Version=2010-08-01&AlarmName=none&StateValue=OK&StateReason=x",
        ))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 404, "{body}");
    assert!(body.contains("<Code>ResourceNotFound</Code>"), "{body}");

    let r = client
        .send(form(
            "Action=PutMetricData&Version=2010-08-01&Namespace=Flotilla%2FQuery",
        ))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 400, "{body}");
    assert!(body.contains("<Code>MissingParameter</Code>"), "{body}");
    assert!(body.contains("MetricData"), "{body}");
}
