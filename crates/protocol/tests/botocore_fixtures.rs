//! Requests serialized by botocore (the AWS CLI's SDK core), captured by
//! `tests/botocore/gen_fixtures.py` and committed: the decoders must yield
//! exactly the parameters botocore was given, and the generated request types
//! must accept them. CBOR response bodies written by botocore's serializer
//! must decode to what was written, and survive our encoder too.

mod common;

use common::same;
use flotilla_model::wire::schema::{OperationSchema, ServiceSchema};
use flotilla_model::wire::{cloudwatch, elbv2, sts};
use flotilla_model::Shape;
use flotilla_protocol::{cbor, query, Form};
use serde::de::DeserializeOwned;
use serde_json::Value;

struct Fixture {
    name: String,
    service: &'static ServiceSchema,
    protocol: String,
    operation: String,
    path: String,
    headers: Value,
    body: Vec<u8>,
    expected: Value,
}

fn fixtures() -> Vec<Fixture> {
    let text = include_str!("botocore/fixtures.json");
    let json: Value = serde_json::from_str(text).unwrap();
    json["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            let service = match f["service"].as_str().unwrap() {
                "elbv2" => &elbv2::SERVICE,
                "sts" => &sts::SERVICE,
                "cloudwatch" => &cloudwatch::SERVICE,
                other => panic!("no fixture service {other}"),
            };
            let hex = s("body_hex");
            let body = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            Fixture {
                name: s("name"),
                service,
                protocol: s("protocol"),
                operation: s("operation"),
                path: s("path"),
                headers: f["headers"].clone(),
                body,
                expected: f["expected"].clone(),
            }
        })
        .collect()
}

fn check<T: DeserializeOwned + Shape>(v: &Value, name: &str) {
    let t: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{name}: the generated type refuses the value: {e}"));
    t.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// The decoded input deserializes into its generated request type and
/// passes the model's rules: what the front will do with it.
fn typed(f: &Fixture, v: &Value) {
    let name = f.name.as_str();
    match (f.service.module, f.operation.as_str()) {
        ("elbv2", "CreateLoadBalancer") => check::<elbv2::CreateLoadBalancerInput>(v, name),
        ("elbv2", "CreateRule") => check::<elbv2::CreateRuleInput>(v, name),
        ("elbv2", "ModifyListener") => check::<elbv2::ModifyListenerInput>(v, name),
        ("elbv2", "ModifyLoadBalancerAttributes") => {
            check::<elbv2::ModifyLoadBalancerAttributesInput>(v, name)
        }
        ("elbv2", "RegisterTargets") => check::<elbv2::RegisterTargetsInput>(v, name),
        ("elbv2", "CreateTargetGroup") => check::<elbv2::CreateTargetGroupInput>(v, name),
        ("elbv2", "SetSecurityGroups") => check::<elbv2::SetSecurityGroupsInput>(v, name),
        ("elbv2", "DescribeTargetHealth") => check::<elbv2::DescribeTargetHealthInput>(v, name),
        ("elbv2", "DescribeLoadBalancers") => check::<elbv2::DescribeLoadBalancersInput>(v, name),
        ("sts", "GetCallerIdentity") => check::<sts::GetCallerIdentityRequest>(v, name),
        ("sts", "AssumeRole") => check::<sts::AssumeRoleRequest>(v, name),
        ("cloudwatch", "PutMetricData") => check::<cloudwatch::PutMetricDataInput>(v, name),
        ("cloudwatch", "PutMetricAlarm") => check::<cloudwatch::PutMetricAlarmInput>(v, name),
        ("cloudwatch", "GetMetricStatistics") => {
            check::<cloudwatch::GetMetricStatisticsInput>(v, name)
        }
        ("cloudwatch", "GetMetricData") => check::<cloudwatch::GetMetricDataInput>(v, name),
        ("cloudwatch", "DescribeAlarms") => check::<cloudwatch::DescribeAlarmsInput>(v, name),
        ("cloudwatch", "ListMetrics") => check::<cloudwatch::ListMetricsInput>(v, name),
        ("cloudwatch", "SetAlarmState") => check::<cloudwatch::SetAlarmStateInput>(v, name),
        ("cloudwatch", "TagResource") => check::<cloudwatch::TagResourceInput>(v, name),
        ("cloudwatch", "DeleteAlarms") => check::<cloudwatch::DeleteAlarmsInput>(v, name),
        other => panic!("{name}: add {other:?} to the typed check"),
    }
}

fn op(f: &Fixture) -> &'static OperationSchema {
    f.service
        .operation(&f.operation)
        .unwrap_or_else(|| panic!("{}: not served", f.name))
}

#[test]
fn query_requests_decode_to_the_parameters_botocore_was_given() {
    let all = fixtures();
    let query_fixtures: Vec<_> = all.iter().filter(|f| f.protocol == "query").collect();
    assert!(query_fixtures.len() >= 14);
    for f in query_fixtures {
        assert!(
            f.headers["content-type"]
                .as_str()
                .unwrap()
                .starts_with("application/x-www-form-urlencoded"),
            "{}",
            f.name
        );
        let form = Form::parse(&f.body).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(form.action(), Some(f.operation.as_str()));
        assert_eq!(form.version(), Some(f.service.api_version));
        let v = query::decode_input(f.service, op(f), &form)
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert!(
            same(&v, &f.expected),
            "{}:\n decoded  {v}\n botocore {}",
            f.name,
            f.expected
        );
        typed(f, &v);
        // Our serializer writes the parameters botocore wrote: the same
        // keys, the same values (numbers and timestamps may be spelled
        // differently: `3` for `3.0`, milliseconds for microseconds).
        let ours = query::encode_input(f.service, op(f), &v).unwrap();
        let mut theirs = form.pairs().to_vec();
        let mut mine = ours.pairs().to_vec();
        theirs.sort();
        mine.sort();
        let keys = |p: &[(String, String)]| p.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&mine), keys(&theirs), "{}", f.name);
        for ((k, a), (_, b)) in mine.iter().zip(&theirs) {
            let numbers_agree =
                matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y);
            let timestamps = k.ends_with("Time") || k.ends_with("Timestamp");
            assert!(
                a == b || numbers_agree || timestamps,
                "{}: {k} = {a}, botocore {b}",
                f.name
            );
        }
    }
}

#[test]
fn cbor_requests_decode_to_the_parameters_botocore_was_given() {
    let all = fixtures();
    let cbor_fixtures: Vec<_> = all
        .iter()
        .filter(|f| f.protocol == "smithy-rpc-v2-cbor")
        .collect();
    assert!(cbor_fixtures.len() >= 9);
    for f in cbor_fixtures {
        assert_eq!(
            f.headers[cbor::PROTOCOL_HEADER],
            cbor::PROTOCOL,
            "{}",
            f.name
        );
        assert_eq!(f.headers["content-type"], cbor::CONTENT_TYPE, "{}", f.name);
        assert!(f.headers.get("x-amz-target").is_none(), "{}", f.name);
        let path =
            cbor::RpcPath::parse(&f.path).unwrap_or_else(|| panic!("{}: path {}", f.name, f.path));
        assert!(path.names(f.service), "{}", f.name);
        assert_eq!(path.operation, f.operation);
        let v = cbor::decode_input(f.service, op(f), &f.body)
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert!(
            same(&v, &f.expected),
            "{}:\n decoded  {v}\n botocore {}",
            f.name,
            f.expected
        );
        typed(f, &v);
        // Our encoding of the same input reads back the same.
        let ours = cbor::encode(f.service, op(f).input.unwrap(), &v).unwrap();
        assert!(
            same(&cbor::decode_input(f.service, op(f), &ours).unwrap(), &v),
            "{}",
            f.name
        );
    }
}

#[test]
fn cbor_responses_written_by_botocore_decode_and_survive_our_encoder() {
    let all = fixtures();
    let outputs: Vec<_> = all
        .iter()
        .filter(|f| f.protocol == "smithy-rpc-v2-cbor-output")
        .collect();
    assert!(outputs.len() >= 4);
    for f in outputs {
        let shape = op(f).output.unwrap();
        let v =
            cbor::decode(f.service, shape, &f.body).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert!(
            same(&v, &f.expected),
            "{}:\n decoded  {v}\n botocore {}",
            f.name,
            f.expected
        );
        let ours = cbor::encode_output(f.service, op(f), &v).unwrap().unwrap();
        assert!(
            same(&cbor::decode(f.service, shape, &ours).unwrap(), &v),
            "{}",
            f.name
        );
    }
}
