//! Property tests: any value of any generated shape survives each codec's
//! encode → decode, and no input, however malformed, makes a decoder panic.
//!
//! Values are made from the schema (`common::gen_value`) by a seeded
//! generator, so a failure reports the seed that reproduces it.

mod common;

use common::{gen_value, read_xml, same, without_empty_nested, xml_value, Rng};
use flotilla_model::wire::schema::{OperationSchema, ServiceSchema};
use flotilla_model::wire::{autoscaling, cloudwatch, elbv2, logs, sts, SERVICES};
use flotilla_protocol::{cbor, query, xml, Form};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn pick(svc: usize, op: usize) -> (&'static ServiceSchema, &'static OperationSchema) {
    let service = SERVICES[svc % SERVICES.len()];
    (service, &service.operations[op % service.operations.len()])
}

/// One operation's input through Query and CBOR, and its output through XML
/// and CBOR.
fn round_trip(service: &ServiceSchema, op: &OperationSchema, seed: u64) {
    let mut rng = Rng::new(seed);
    let ctx = format!("{}.{} seed {seed}", service.module, op.name);
    if let Some(input) = op.input {
        let v = gen_value(service, input, &mut rng, 0);

        let form = query::encode_input(service, op, &v).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let parsed = Form::parse(form.encode().as_bytes()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(parsed.action(), Some(op.name));
        let back =
            query::decode_input(service, op, &parsed).unwrap_or_else(|e| panic!("{ctx}: {e}\n{v}"));
        let want = without_empty_nested(&v, true).unwrap();
        assert!(
            same(&want, &back),
            "{ctx}: Query\n sent {want}\n read {back}"
        );

        let bytes = cbor::encode(service, input, &v).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let back = cbor::decode_input(service, op, &bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            same(&v, &back),
            "{ctx}: CBOR input\n sent {v}\n read {back}"
        );
    }
    if let Some(output) = op.output {
        let v = gen_value(service, output, &mut rng, 0);

        let name = op.result_wrapper.unwrap_or("Result");
        let text =
            xml::encode_element(service, output, &v, name).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let back = xml_value(service, output, &read_xml(text.as_bytes()));
        assert!(
            same(&v, &back),
            "{ctx}: XML\n sent {v}\n read {back}\n xml {text}"
        );

        let bytes = cbor::encode_output(service, op, &v)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"))
            .unwrap();
        let back = cbor::decode(service, output, &bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            same(&v, &back),
            "{ctx}: CBOR output\n sent {v}\n read {back}"
        );
    }
}

#[test]
fn every_operation_of_every_service_round_trips() {
    for service in SERVICES {
        for op in service.operations {
            for seed in 0..6 {
                round_trip(service, op, seed);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_value_round_trips(svc in 0usize..16, op in 0usize..1000, seed in any::<u64>()) {
        let (service, op) = pick(svc, op);
        round_trip(service, op, seed);
    }
}

/// A value made from the schema is a value of the generated type, and the
/// type's value is unchanged by each codec.
fn typed<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    service: &ServiceSchema,
    op: &OperationSchema,
    input: bool,
    seed: u64,
) {
    let shape = if input { op.input } else { op.output }.unwrap();
    let v = gen_value(service, shape, &mut Rng::new(seed), 0);
    let t: T = serde_json::from_value(v).unwrap_or_else(|e| panic!("{} seed {seed}: {e}", op.name));
    let v = serde_json::to_value(&t).unwrap();
    let via_cbor: T = serde_json::from_value(
        cbor::decode(service, shape, &cbor::encode(service, shape, &v).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(via_cbor, t, "{} seed {seed}: CBOR", op.name);
    if input {
        let form = query::encode_input(service, op, &v).unwrap();
        let via_query: T =
            serde_json::from_value(query::decode_input(service, op, &form).unwrap()).unwrap();
        let want: T = serde_json::from_value(without_empty_nested(&v, true).unwrap()).unwrap();
        assert_eq!(via_query, want, "{} seed {seed}: Query", op.name);
    } else {
        let text = xml::encode_element(service, shape, &v, "R").unwrap();
        let via_xml: T =
            serde_json::from_value(xml_value(service, shape, &read_xml(text.as_bytes()))).unwrap();
        assert_eq!(via_xml, t, "{} seed {seed}: XML", op.name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_types_round_trip(seed in any::<u64>()) {
        typed::<elbv2::CreateLoadBalancerInput>(&elbv2::SERVICE, elbv2::Operation::CreateLoadBalancer.schema(), true, seed);
        typed::<elbv2::CreateRuleInput>(&elbv2::SERVICE, elbv2::Operation::CreateRule.schema(), true, seed);
        typed::<elbv2::DescribeRulesOutput>(&elbv2::SERVICE, elbv2::Operation::DescribeRules.schema(), false, seed);
        typed::<elbv2::DescribeTargetHealthOutput>(&elbv2::SERVICE, elbv2::Operation::DescribeTargetHealth.schema(), false, seed);
        typed::<elbv2::DescribeLoadBalancersOutput>(&elbv2::SERVICE, elbv2::Operation::DescribeLoadBalancers.schema(), false, seed);
        typed::<cloudwatch::PutMetricDataInput>(&cloudwatch::SERVICE, cloudwatch::Operation::PutMetricData.schema(), true, seed);
        typed::<cloudwatch::PutMetricAlarmInput>(&cloudwatch::SERVICE, cloudwatch::Operation::PutMetricAlarm.schema(), true, seed);
        typed::<cloudwatch::GetMetricDataOutput>(&cloudwatch::SERVICE, cloudwatch::Operation::GetMetricData.schema(), false, seed);
        typed::<cloudwatch::DescribeAlarmsOutput>(&cloudwatch::SERVICE, cloudwatch::Operation::DescribeAlarms.schema(), false, seed);
        typed::<sts::AssumeRoleResponse>(&sts::SERVICE, sts::Operation::AssumeRole.schema(), false, seed);
        typed::<logs::FilterLogEventsResponse>(&logs::SERVICE, logs::Operation::FilterLogEvents.schema(), false, seed);
        typed::<autoscaling::PutScalingPolicyRequest>(&autoscaling::SERVICE, autoscaling::Operation::PutScalingPolicy.schema(), true, seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes as a CBOR body: an answer, never a panic.
    #[test]
    fn cbor_decoding_never_panics(svc in 0usize..16, op in 0usize..1000, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let (service, op) = pick(svc, op);
        let _ = cbor::decode_input(service, op, &body);
    }

    /// A valid body with bytes changed, cut or inserted: the decoder gets
    /// further into it than with random bytes.
    #[test]
    fn damaged_cbor_never_panics(svc in 0usize..16, op in 0usize..1000, seed in any::<u64>(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6)) {
        let (service, op) = pick(svc, op);
        let Some(input) = op.input else { return Ok(()) };
        let v = gen_value(service, input, &mut Rng::new(seed), 0);
        let mut body = cbor::encode(service, input, &v).unwrap();
        for (at, byte, how) in edits {
            let at = at % (body.len() + 1);
            match how {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                _ => body.truncate(at),
            }
        }
        let _ = cbor::decode_input(service, op, &body);
    }

    /// Random bytes and random keys as a Query body.
    #[test]
    fn query_decoding_never_panics(svc in 0usize..16, op in 0usize..1000, body in proptest::collection::vec(any::<u8>(), 0..256), keys in "[A-Za-z.0-9=&%+]{0,200}") {
        let (service, op) = pick(svc, op);
        if let Ok(form) = Form::parse(&body) {
            let _ = query::decode_input(service, op, &form);
        }
        if let Ok(form) = Form::parse(keys.as_bytes()) {
            let _ = query::decode_input(service, op, &form);
        }
    }

    /// A valid Query request with keys renamed and values replaced.
    #[test]
    fn damaged_query_never_panics(svc in 0usize..16, op in 0usize..1000, seed in any::<u64>(), edits in proptest::collection::vec((any::<usize>(), "[A-Za-z.0-9]{0,12}", 0u8..3), 1..6)) {
        let (service, op) = pick(svc, op);
        let Some(input) = op.input else { return Ok(()) };
        let v = gen_value(service, input, &mut Rng::new(seed), 0);
        let mut pairs = query::encode_input(service, op, &v).unwrap().pairs().to_vec();
        for (at, text, how) in edits {
            let n = pairs.len();
            let (k, val) = &mut pairs[at % n];
            match how {
                0 => *val = text,
                1 => k.push_str(&format!(".{text}")),
                _ => *k = text,
            }
        }
        let _ = query::decode_input(service, op, &Form::from_pairs(pairs));
    }
}

#[test]
fn deep_nesting_is_refused_not_followed() {
    let op = cloudwatch::Operation::PutMetricData.schema();
    // Arrays in arrays in a member the shape does not have (so skipped).
    let mut body = vec![0xa1, 0x65];
    body.extend(b"Other");
    body.extend(std::iter::repeat_n(0x9f, 200_000));
    assert!(cbor::decode_input(&cloudwatch::SERVICE, op, &body)
        .unwrap_err()
        .to_string()
        .contains("nested more than"));
    // Tags in tags.
    let mut body = vec![0xa1, 0x69];
    body.extend(b"Namespace");
    body.extend(std::iter::repeat_n([0xd9, 0xd9, 0xf7], 100_000).flatten());
    assert!(cbor::decode_input(&cloudwatch::SERVICE, op, &body).is_err());
    // A Query key of a hundred thousand parts.
    let key = format!("MetricData{}=1", ".member.1".repeat(50_000));
    let form = Form::parse(key.as_bytes()).unwrap();
    assert!(query::decode_input(&cloudwatch::SERVICE, op, &form)
        .unwrap_err()
        .to_string()
        .contains("parts"));
    let _: Value = query::decode_input(
        &cloudwatch::SERVICE,
        op,
        &Form::parse(b"Namespace=x").unwrap(),
    )
    .unwrap();
}
