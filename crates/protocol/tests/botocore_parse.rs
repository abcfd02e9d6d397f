//! Our responses, read back by botocore's own response parsers (the AWS
//! CLI's): every output value and error we encode, in every protocol a
//! service speaks, must parse into what we meant.
//!
//! Runs the AWS CLI's Python (`scripts/test` installs it under
//! `target/awscli-venv`; `FLOTILLA_TEST_PYTHON` overrides) on
//! `tests/botocore/parse_responses.py`.

mod common;

use std::process::Command;

use common::{gen_value, Rng};
use flotilla_model::wire::schema::{ErrorSchema, OperationSchema, Protocol, ServiceSchema};
use flotilla_model::wire::{autoscaling, cloudwatch, ecs, elbv2, logs, sts};
use flotilla_protocol::{common as errors, error_reply, output_reply, Reply};
use serde_json::{json, Value};

enum Expect {
    Output(Value),
    /// Code, Message, and for query-compatible errors the Type.
    Error(&'static str, &'static str, Option<&'static str>),
}

struct Case {
    label: String,
    service: &'static ServiceSchema,
    protocol: Protocol,
    op: &'static OperationSchema,
    reply: Reply,
    expect: Expect,
}

const RID: &str = "5bd1a5b0-0000-4000-8000-000000000001";

fn botocore_name(s: &ServiceSchema) -> &'static str {
    match s.module {
        "autoscaling" => "application-autoscaling",
        m => m,
    }
}

/// The vendored model the service's types come from.
fn model_file(s: &ServiceSchema) -> String {
    let file = match s.module {
        "ecs" => "ecs-2014-11-13.json",
        "elbv2" => "elasticloadbalancingv2-2015-12-01.json",
        "logs" => "logs-2014-03-28.json",
        "cloudwatch" => "monitoring-2010-08-01.json",
        "autoscaling" => "application-autoscaling-2016-02-06.json",
        "sts" => "sts-2011-06-15.json",
        m => panic!("no model for {m}"),
    };
    format!("{}/../model/aws/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn protocol_name(p: Protocol) -> &'static str {
    p.model_name()
}

fn output(
    service: &'static ServiceSchema,
    protocol: Protocol,
    op: &'static OperationSchema,
    value: Value,
    label: &str,
) -> Case {
    let reply =
        output_reply(protocol, service, op, &value, RID).unwrap_or_else(|e| panic!("{label}: {e}"));
    Case {
        label: label.to_string(),
        service,
        protocol,
        op,
        reply,
        expect: Expect::Output(value),
    }
}

fn error(
    service: &'static ServiceSchema,
    protocol: Protocol,
    op: &'static OperationSchema,
    err: &ErrorSchema,
    message: &'static str,
    expect_code: &'static str,
    expect_type: Option<&'static str>,
) -> Case {
    let reply = error_reply(protocol, service, err, message, RID);
    let label = format!("{} {:?} error {}", service.module, protocol, err.shape);
    Case {
        label,
        service,
        protocol,
        op,
        reply,
        expect: Expect::Error(expect_code, message, expect_type),
    }
}

/// Numbers compared by value, with a microsecond's slack for timestamps
/// (botocore reads them into `datetime`, which holds microseconds).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 2e-6
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();

    // Hand-written answers, as the services will send them.
    let gci = sts::Operation::GetCallerIdentity.schema();
    let identity = json!({"UserId": "AIDAEXAMPLE", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/ci"});
    out.push(output(
        &sts::SERVICE,
        Protocol::AwsQuery,
        gci,
        identity,
        "sts GetCallerIdentity",
    ));

    let lb = json!({
        "LoadBalancerArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188",
        "DNSName": "web-1.lb.flotilla.local", "CreatedTime": 1767225600.123, "LoadBalancerName": "web",
        "Scheme": "internet-facing", "VpcId": "vpc-1", "State": {"Code": "active"}, "Type": "application",
        "AvailabilityZones": [{"ZoneName": "zone-a", "SubnetId": "subnet-a", "LoadBalancerAddresses": []}],
        "SecurityGroups": [], "IpAddressType": "ipv4",
    });
    let op = elbv2::Operation::DescribeLoadBalancers.schema();
    out.push(output(
        &elbv2::SERVICE,
        Protocol::AwsQuery,
        op,
        json!({"LoadBalancers": [lb], "NextMarker": "m"}),
        "elbv2 DescribeLoadBalancers",
    ));
    let op = elbv2::Operation::DescribeTargetHealth.schema();
    let health = json!({"TargetHealthDescriptions": [
        {"Target": {"Id": "i-1", "Port": 32768}, "HealthCheckPort": "32768",
         "TargetHealth": {"State": "unhealthy", "Reason": "Target.ResponseCodeMismatch", "Description": "Health checks failed with these codes: [500]"}},
        {"Target": {"Id": "i-2", "Port": 32769}, "TargetHealth": {"State": "healthy"}},
    ]});
    out.push(output(
        &elbv2::SERVICE,
        Protocol::AwsQuery,
        op,
        health,
        "elbv2 DescribeTargetHealth",
    ));
    let op = elbv2::Operation::DescribeRules.schema();
    let rules = json!({"Rules": [{
        "RuleArn": "arn:rule", "Priority": "10", "IsDefault": false,
        "Conditions": [{"Field": "path-pattern", "Values": ["/api/*"], "PathPatternConfig": {"Values": ["/api/*"]}}],
        "Actions": [{"Type": "forward", "Order": 1, "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": "arn:tg1", "Weight": 80}, {"TargetGroupArn": "arn:tg2", "Weight": 20}],
            "TargetGroupStickinessConfig": {"Enabled": false}}}],
    }]});
    out.push(output(
        &elbv2::SERVICE,
        Protocol::AwsQuery,
        op,
        rules,
        "elbv2 DescribeRules",
    ));

    let alarms = json!({"MetricAlarms": [{
        "AlarmName": "cpu-high", "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:cpu-high",
        "ActionsEnabled": true, "AlarmActions": ["arn:x"], "OKActions": [], "StateValue": "ALARM",
        "StateReason": "Threshold Crossed: 3 datapoints [91.0 (01/01/26 00:02:00)] were greater than the threshold (80.0).",
        "StateUpdatedTimestamp": 1767225720.5, "MetricName": "CPUUtilization", "Namespace": "AWS/ECS",
        "Statistic": "Average", "Dimensions": [{"Name": "ClusterName", "Value": "default"}], "Period": 60,
        "EvaluationPeriods": 3, "Threshold": 80.0, "ComparisonOperator": "GreaterThanThreshold",
    }]});
    let metric_data = json!({"MetricDataResults": [{"Id": "cpu", "Label": "CPUUtilization", "StatusCode": "Complete",
        "Timestamps": [1767225600.0, 1767225660.0], "Values": [12.5, 99.75]}]});
    let stats = json!({"Label": "CPUUtilization", "Datapoints": [
        {"Timestamp": 1767225600.0, "Average": 40.25, "Maximum": 99.0, "Unit": "Percent", "ExtendedStatistics": {"p99": 98.5}}]});
    for protocol in cloudwatch::SERVICE.protocols {
        let p = *protocol;
        out.push(output(
            &cloudwatch::SERVICE,
            p,
            cloudwatch::Operation::DescribeAlarms.schema(),
            alarms.clone(),
            "cloudwatch DescribeAlarms",
        ));
        out.push(output(
            &cloudwatch::SERVICE,
            p,
            cloudwatch::Operation::GetMetricData.schema(),
            metric_data.clone(),
            "cloudwatch GetMetricData",
        ));
        out.push(output(
            &cloudwatch::SERVICE,
            p,
            cloudwatch::Operation::GetMetricStatistics.schema(),
            stats.clone(),
            "cloudwatch GetMetricStatistics",
        ));
        out.push(output(
            &cloudwatch::SERVICE,
            p,
            cloudwatch::Operation::DeleteAlarms.schema(),
            json!({}),
            "cloudwatch DeleteAlarms",
        ));
    }

    // Values of every output shape, made up from the schema, in every
    // protocol each service speaks.
    for service in [
        &elbv2::SERVICE,
        &sts::SERVICE,
        &cloudwatch::SERVICE,
        &logs::SERVICE,
        &autoscaling::SERVICE,
    ] {
        for protocol in service.protocols {
            for op in service.operations {
                let Some(shape) = op.output else { continue };
                for seed in 0..3 {
                    let v = gen_value(service, shape, &mut Rng::new(seed), 0);
                    out.push(output(
                        service,
                        *protocol,
                        op,
                        v,
                        &format!("{} {:?} {} seed {seed}", service.module, protocol, op.name),
                    ));
                }
            }
        }
    }

    // Errors.
    let create_lb = elbv2::Operation::CreateLoadBalancer.schema();
    let dup = elbv2::Exception::DuplicateLoadBalancerNameException.schema();
    out.push(error(
        &elbv2::SERVICE,
        Protocol::AwsQuery,
        create_lb,
        dup,
        "A load balancer with the same name 'web' exists.",
        "DuplicateLoadBalancerName",
        Some("Sender"),
    ));
    out.push(error(
        &elbv2::SERVICE,
        Protocol::AwsQuery,
        create_lb,
        &errors::VALIDATION_ERROR,
        "Name must be <= 32 characters & more",
        "ValidationError",
        Some("Sender"),
    ));
    out.push(error(
        &sts::SERVICE,
        Protocol::AwsQuery,
        gci,
        &errors::INVALID_ACTION,
        "Could not find operation Nope for version 2011-06-15",
        "InvalidAction",
        Some("Sender"),
    ));
    let put = cloudwatch::Operation::PutMetricAlarm.schema();
    let bad = cloudwatch::Exception::InvalidParameterValueException.schema();
    let missing = cloudwatch::Exception::ResourceNotFound.schema();
    for protocol in cloudwatch::SERVICE.protocols {
        // Query sends the Query code; JSON and CBOR send the shape and, as
        // the service is query-compatible, the Query code in a header that
        // botocore prefers.
        out.push(error(
            &cloudwatch::SERVICE,
            *protocol,
            put,
            bad,
            "The parameter Period must be a multiple of 60.",
            "InvalidParameterValue",
            Some("Sender"),
        ));
        out.push(error(
            &cloudwatch::SERVICE,
            *protocol,
            put,
            missing,
            "No alarm named nope.",
            "ResourceNotFound",
            Some("Sender"),
        ));
        out.push(error(
            &cloudwatch::SERVICE,
            *protocol,
            put,
            &errors::INTERNAL_FAILURE,
            "boom",
            "InternalFailure",
            Some("Receiver"),
        ));
    }
    let ecs_op = ecs::Operation::DescribeClusters.schema();
    out.push(error(
        &ecs::SERVICE,
        Protocol::AwsJson1_1,
        ecs_op,
        ecs::Exception::ClusterNotFoundException.schema(),
        "Cluster not found.",
        "ClusterNotFoundException",
        None,
    ));
    let logs_op = logs::Operation::PutLogEvents.schema();
    out.push(error(
        &logs::SERVICE,
        Protocol::AwsJson1_1,
        logs_op,
        logs::Exception::ResourceNotFoundException.schema(),
        "The specified log group does not exist.",
        "ResourceNotFoundException",
        None,
    ));
    out
}

#[test]
fn botocore_parses_what_we_send() {
    let cases = cases();
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "model": model_file(c.service),
                "service": botocore_name(c.service),
                "protocol": protocol_name(c.protocol),
                "operation": c.op.name,
                "status": c.reply.status,
                "headers": c.reply.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "body_b64": common::b64(&c.reply.body),
            })
        })
        .collect();
    let dir =
        std::env::temp_dir().join(format!("flotilla-protocol-botocore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&input).unwrap()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/botocore/parse_responses.py");
    let run = Command::new(common::botocore_python())
        .arg(&script)
        .arg(&file)
        .output()
        .expect("running botocore's Python");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "parse_responses.py failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let result: Value = serde_json::from_slice(&run.stdout).unwrap();
    let parsed = result["parsed"].as_array().unwrap();
    assert_eq!(parsed.len(), cases.len());

    let mut failures = Vec::new();
    for (case, got) in cases.iter().zip(parsed) {
        let mut got = got.clone();
        if let Some(e) = got.get("PARSE_ERROR") {
            failures.push(format!("{}: botocore could not parse it: {e}", case.label));
            continue;
        }
        let meta = got
            .as_object_mut()
            .unwrap()
            .remove("ResponseMetadata")
            .unwrap_or(Value::Null);
        // botocore reports no metadata for an RPC v2 answer without output
        // (the header is there; it has no parsed body to put it in).
        let unreported = case.protocol == Protocol::RpcV2Cbor && case.op.output.is_none();
        if meta["RequestId"] != RID && !unreported {
            failures.push(format!("{}: request id {}", case.label, meta["RequestId"]));
        }
        match &case.expect {
            Expect::Output(want) => {
                if !close(&got, want) {
                    failures.push(format!("{}:\n sent   {want}\n parsed {got}", case.label));
                }
            }
            Expect::Error(code, message, ty) => {
                let e = &got["Error"];
                if e["Code"] != *code
                    || e["Message"] != *message
                    || ty.is_some_and(|t| e["Type"] != t)
                {
                    failures.push(format!("{}: parsed {e}", case.label));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "botocore {}: {} of {} cases differ:\n{}",
        result["botocore_version"],
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
