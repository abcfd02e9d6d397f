//! The generated service schemas agree with the models they come from and
//! with the generated types: names, protocols, error codes, shape links.

use flotilla_model::wire::schema::{Fault, Protocol, ShapeKind};
use flotilla_model::wire::{autoscaling, cloudwatch, ecs, elbv2, logs, sts, SERVICES};

#[test]
fn every_shape_link_points_inside_its_table() {
    for svc in SERVICES {
        let n = svc.shapes.len();
        for (i, s) in svc.shapes.iter().enumerate() {
            if i > 0 {
                assert!(
                    svc.shapes[i - 1].name < s.name,
                    "{}: shapes sorted by name",
                    svc.module
                );
            }
            match s.kind {
                ShapeKind::Structure(members) | ShapeKind::Union(members) => {
                    for m in members {
                        assert!((m.target.0 as usize) < n, "{}.{}", s.name, m.name);
                    }
                }
                ShapeKind::List(l) => assert!((l.member.0 as usize) < n),
                ShapeKind::Map(m) => assert!((m.key.0 as usize) < n && (m.value.0 as usize) < n),
                _ => {}
            }
        }
        for op in svc.operations {
            for e in op.errors {
                assert!((*e as usize) < svc.errors.len());
            }
            assert_eq!(svc.operation(op.name).map(|o| o.name), Some(op.name));
        }
    }
}

#[test]
fn operations_round_trip_through_their_names() {
    for op in elbv2::Operation::ALL {
        assert_eq!(elbv2::Operation::from_name(op.name()), Some(*op));
    }
    for op in ecs::Operation::ALL {
        assert_eq!(ecs::Operation::from_name(op.name()), Some(*op));
    }
    assert_eq!(
        cloudwatch::Operation::from_name("PutMetricData"),
        Some(cloudwatch::Operation::PutMetricData)
    );
    assert_eq!(
        cloudwatch::Operation::from_name("PutDashboard"),
        None,
        "not served"
    );
    assert_eq!(elbv2::Operation::ALL.len(), 51);
    assert_eq!(logs::Operation::ALL.len(), 17);
    assert_eq!(cloudwatch::Operation::ALL.len(), 15);
    assert_eq!(autoscaling::Operation::ALL.len(), 14);
}

#[test]
fn service_metadata_is_the_models() {
    assert_eq!(ecs::SERVICE.protocols, &[Protocol::AwsJson1_1]);
    assert_eq!(ecs::SERVICE.target_prefix, Some(ecs::TARGET_PREFIX));
    assert_eq!(ecs::SERVICE.signing_name, "ecs");

    assert_eq!(elbv2::SERVICE.protocols, &[Protocol::AwsQuery]);
    assert_eq!(elbv2::SERVICE.signing_name, "elasticloadbalancing");
    assert_eq!(elbv2::SERVICE.api_version, "2015-12-01");
    assert_eq!(
        elbv2::SERVICE.xml_namespace,
        Some("http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/")
    );

    assert_eq!(
        cloudwatch::SERVICE.protocols,
        &[
            Protocol::RpcV2Cbor,
            Protocol::AwsJson1_0,
            Protocol::AwsQuery
        ]
    );
    assert_eq!(cloudwatch::SERVICE.signing_name, "monitoring");
    assert_eq!(
        cloudwatch::SERVICE.smithy_service_name(),
        "GraniteServiceVersion20100801"
    );
    assert_eq!(
        cloudwatch::SERVICE.smithy_namespace(),
        "com.amazonaws.cloudwatch"
    );
    assert_eq!(
        cloudwatch::SERVICE.target_prefix,
        Some("GraniteServiceVersion20100801")
    );
    assert!(cloudwatch::SERVICE.query_compatible);

    assert_eq!(logs::SERVICE.target_prefix, Some("Logs_20140328"));
    assert_eq!(autoscaling::SERVICE.signing_name, "application-autoscaling");
    assert_eq!(
        autoscaling::SERVICE.target_prefix,
        Some("AnyScaleFrontendService")
    );
    assert_eq!(
        sts::SERVICE.xml_namespace,
        Some("https://sts.amazonaws.com/doc/2011-06-15/")
    );
}

#[test]
fn query_outputs_name_their_result_wrapper() {
    let op = elbv2::Operation::CreateLoadBalancer.schema();
    assert_eq!(op.result_wrapper, Some("CreateLoadBalancerResult"));
    assert_eq!(
        elbv2::SERVICE.shape(op.input.unwrap()).name,
        "CreateLoadBalancerInput"
    );
    let op = sts::Operation::GetCallerIdentity.schema();
    assert_eq!(op.result_wrapper, Some("GetCallerIdentityResult"));
    assert_eq!(
        sts::SERVICE.shape(op.output.unwrap()).name,
        "GetCallerIdentityResponse"
    );
}

#[test]
fn errors_carry_the_query_code_status_and_fault() {
    let e = elbv2::Exception::DuplicateLoadBalancerNameException.schema();
    assert_eq!(
        (e.code, e.status, e.fault),
        ("DuplicateLoadBalancerName", 400, Fault::Sender)
    );
    assert_eq!(elbv2::SERVICE.error("DuplicateLoadBalancerName"), Some(e));
    assert_eq!(
        elbv2::SERVICE.error("DuplicateLoadBalancerNameException"),
        Some(e)
    );
    // A 500 the model does not mark as a server fault is still the service's.
    let e = elbv2::SERVICE.error("HealthUnavailable").unwrap();
    assert_eq!((e.status, e.fault), (500, Fault::Receiver));

    let e = cloudwatch::Exception::ResourceNotFound.schema();
    assert_eq!((e.code, e.status), ("ResourceNotFound", 404));
    let e = cloudwatch::SERVICE.error("InternalServiceFault").unwrap();
    assert_eq!(
        (e.code, e.status, e.fault),
        ("InternalServiceError", 500, Fault::Receiver)
    );

    let e = ecs::Exception::ServerException.schema();
    assert_eq!(
        (e.code, e.status, e.fault),
        ("ServerException", 500, Fault::Receiver)
    );
    let e = ecs::Exception::ClusterNotFoundException.schema();
    assert_eq!(
        (e.code, e.status, e.fault),
        ("ClusterNotFoundException", 400, Fault::Sender)
    );
}

#[test]
fn members_keep_their_location_names() {
    // STS's error shapes are not generated; its members here have none, so
    // check the rule on the table itself: a member's XML name defaults to its name.
    for svc in SERVICES {
        for s in svc.shapes {
            if let Some(members) = s.kind.members() {
                for m in members {
                    assert!(!m.xml_name.is_empty());
                }
            }
        }
    }
    let id = elbv2::SERVICE.shape_named("Listener").unwrap();
    let ShapeKind::Structure(members) = elbv2::SERVICE.shape(id).kind else {
        panic!("Listener is a structure")
    };
    let names: Vec<_> = members.iter().map(|m| m.name).collect();
    assert_eq!(
        &names[..3],
        ["ListenerArn", "LoadBalancerArn", "Port"],
        "model order"
    );
}

#[test]
fn documents_keep_whatever_json_they_hold() {
    let hook: ecs::HookDetails = serde_json::json!({"any": ["thing", 1]});
    let back: ecs::HookDetails =
        serde_json::from_str(&serde_json::to_string(&hook).unwrap()).unwrap();
    assert_eq!(back, hook);
}

#[test]
fn a_union_sets_exactly_one_member() {
    use flotilla_model::Shape;
    let none = cloudwatch::EvaluationWindow::default();
    let err = none.validate().unwrap_err();
    assert_eq!(
        (err.field.as_str(), err.rule.as_str()),
        ("", "must set exactly one of WallClockWindow, SlidingWindow")
    );
    let two: cloudwatch::EvaluationWindow =
        serde_json::from_value(serde_json::json!({"WallClockWindow": {}, "SlidingWindow": {}}))
            .unwrap();
    assert!(two.validate().is_err());
    let one: cloudwatch::EvaluationWindow =
        serde_json::from_value(serde_json::json!({"SlidingWindow": {}})).unwrap();
    // Past the union rule; whatever else fails is inside the member.
    assert!(one
        .validate()
        .map_or_else(|e| e.field.starts_with("SlidingWindow"), |()| true));
}
