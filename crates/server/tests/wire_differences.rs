//! Differences from real ECS found when real clients were tried, each pinned
//! here: validation never stricter than ECS, AWS's own message texts, and
//! the shapes ECS answers with.

mod common;
mod support;

use common::{TestServer, ALICE};
use serde_json::json;
use support::{assert_error, ok, send_json};

/// A cluster with one registered instance and a task definition.
async fn cluster_with_capacity(c: &flotilla_client::Client) {
    ok(c, "CreateCluster", &json!({"clusterName": "prod"})).await;
    let resources = json!([{"name": "CPU", "type": "INTEGER", "integerValue": 1024}, {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}]);
    ok(
        c,
        "RegisterContainerInstance",
        &json!({"cluster": "prod", "totalResources": resources}),
    )
    .await;
    ok(c, "RegisterTaskDefinition", &json!({"family": "web", "containerDefinitions": [{"name": "app", "image": "i", "memory": 64}]})).await;
}

/// Real ECS takes `startedBy` with spaces (a popular deployment tool sends
/// `ECS Deploy`), although its reference lists fewer characters.
#[tokio::test]
async fn started_by_takes_what_real_ecs_takes() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    cluster_with_capacity(&c).await;
    let out = ok(
        &c,
        "RunTask",
        &json!({"cluster": "prod", "taskDefinition": "web", "startedBy": "ECS Deploy"}),
    )
    .await;
    // Placed or not (the instance's agent is not connected), the request is valid.
    assert!(
        out.get("tasks").is_some() && out.get("failures").is_some(),
        "{out}"
    );
    let r = send_json(
        &c,
        "RunTask",
        &json!({"cluster": "prod", "taskDefinition": "web", "startedBy": "x".repeat(129)}),
    )
    .await;
    assert_error(&r, 400, "InvalidParameterException");
}

#[tokio::test]
async fn empty_describe_lists_are_refused_in_ecs_words() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    cluster_with_capacity(&c).await;
    let r = send_json(
        &c,
        "DescribeTasks",
        &json!({"cluster": "prod", "tasks": []}),
    )
    .await;
    assert_eq!(
        assert_error(&r, 400, "InvalidParameterException"),
        "Tasks cannot be empty."
    );
    let r = send_json(
        &c,
        "DescribeContainerInstances",
        &json!({"cluster": "prod", "containerInstances": []}),
    )
    .await;
    assert_eq!(
        assert_error(&r, 400, "InvalidParameterException"),
        "Container instance cannot be empty."
    );
}

#[tokio::test]
async fn aws_message_texts_are_verbatim() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    cluster_with_capacity(&c).await;
    let r = send_json(
        &c,
        "RegisterTaskDefinition",
        &json!({"family": "x", "containerDefinitions": [{"image": "i", "memory": 64}]}),
    )
    .await;
    assert_eq!(
        assert_error(&r, 400, "ClientException"),
        "Container.name should not be null or empty."
    );
    let r = send_json(
        &c,
        "RegisterTaskDefinition",
        &json!({"family": "x", "containerDefinitions": [{"name": "a", "memory": 64}]}),
    )
    .await;
    assert_eq!(
        assert_error(&r, 400, "ClientException"),
        "Container.image should not be null or empty."
    );
    ok(&c, "CreateService", &json!({"cluster": "prod", "serviceName": "api", "taskDefinition": "web", "desiredCount": 1})).await;
    let r = send_json(
        &c,
        "DeleteService",
        &json!({"cluster": "prod", "service": "api"}),
    )
    .await;
    assert_eq!(
        assert_error(&r, 400, "InvalidParameterException"),
        "The service cannot be stopped while it is scaled above 0."
    );
}

/// The MISSING failure for a bare service name carries the short ARN form.
#[tokio::test]
async fn missing_services_have_the_short_arn() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    cluster_with_capacity(&c).await;
    let out = ok(
        &c,
        "DescribeServices",
        &json!({"cluster": "prod", "services": ["nope"]}),
    )
    .await;
    assert_eq!(
        out["failures"][0]["arn"],
        "arn:aws:ecs:us-east-1:111111111111:service/nope"
    );
    assert_eq!(out["failures"][0]["reason"], "MISSING");
}

/// A deleted cluster stays discoverable, INACTIVE, by name and by ARN, and
/// after a restart; a new cluster of that name starts empty.
#[tokio::test]
async fn deleted_clusters_stay_discoverable() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    let arn = ok(&c, "CreateCluster", &json!({"clusterName": "gone"})).await["cluster"]
        ["clusterArn"]
        .clone();
    ok(&c, "DeleteCluster", &json!({"cluster": "gone"})).await;
    for name in [json!("gone"), arn.clone()] {
        let out = ok(&c, "DescribeClusters", &json!({"clusters": [name]})).await;
        assert_eq!(out["clusters"][0]["status"], "INACTIVE", "{out}");
        assert_eq!(out["failures"], json!([]));
    }
    let listed = ok(&c, "ListClusters", &json!({})).await;
    assert!(
        !listed["clusterArns"].as_array().unwrap().contains(&arn),
        "{listed}"
    );
    let dir = server.data_dir.clone();
    let keep = server.stop().await;
    let server = TestServer::start_in(dir).await;
    let c = server.raw(&ALICE);
    let out = ok(&c, "DescribeClusters", &json!({"clusters": ["gone"]})).await;
    assert_eq!(out["clusters"][0]["status"], "INACTIVE", "{out}");
    drop(keep);
}
