//! The ECS API driven by the official AWS SDK for Rust, end to end over HTTP
//! with SigV4, against a server on a real SQLite store.

mod common;

use aws_sdk_ecs::types::{
    ClusterField, ContainerDefinition, ContainerInstanceStatus, KeyValuePair, PortMapping,
    Resource, SortOrder, Tag, TaskDefinitionFamilyStatus, TaskDefinitionStatus,
};
use common::{TestServer, ALICE, BOB};

fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image("flotilla-test:latest")
        .memory(64)
        .essential(true)
        .environment(
            KeyValuePair::builder()
                .name("GREETING")
                .value("hello")
                .build(),
        )
        .port_mappings(
            PortMapping::builder()
                .container_port(8080)
                .host_port(0)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn clusters_lifecycle() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);

    let created = ecs
        .create_cluster()
        .cluster_name("web")
        .tags(Tag::builder().key("team").value("edge").build())
        .send()
        .await
        .unwrap();
    let c = created.cluster.unwrap();
    assert_eq!(c.cluster_name(), Some("web"));
    assert_eq!(c.status(), Some("ACTIVE"));
    assert_eq!(
        c.cluster_arn(),
        Some("arn:aws:ecs:us-east-1:111111111111:cluster/web")
    );

    // Idempotent: the same cluster comes back.
    let again = ecs
        .create_cluster()
        .cluster_name("web")
        .send()
        .await
        .unwrap();
    assert_eq!(again.cluster.unwrap().cluster_arn(), c.cluster_arn());

    let d = ecs
        .describe_clusters()
        .clusters("web")
        .clusters("nope")
        .include(ClusterField::Tags)
        .include(ClusterField::Statistics)
        .include(ClusterField::Settings)
        .send()
        .await
        .unwrap();
    assert_eq!(d.clusters().len(), 1);
    let web = &d.clusters()[0];
    assert_eq!(web.tags()[0].key(), Some("team"));
    assert!(!web.statistics().is_empty());
    assert_eq!(web.settings()[0].value(), Some("disabled"));
    assert_eq!(d.failures().len(), 1);
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    assert_eq!(
        d.failures()[0].arn(),
        Some("arn:aws:ecs:us-east-1:111111111111:cluster/nope")
    );

    // Without include, no tags.
    let plain = ecs
        .describe_clusters()
        .clusters("web")
        .send()
        .await
        .unwrap();
    assert!(plain.clusters()[0].tags().is_empty());

    let updated = ecs
        .update_cluster_settings()
        .cluster("web")
        .settings(
            aws_sdk_ecs::types::ClusterSetting::builder()
                .name(aws_sdk_ecs::types::ClusterSettingName::ContainerInsights)
                .value("enabled")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        updated.cluster.unwrap().settings()[0].value(),
        Some("enabled")
    );

    let bad = ecs
        .update_cluster_settings()
        .cluster("web")
        .settings(
            aws_sdk_ecs::types::ClusterSetting::builder()
                .name(aws_sdk_ecs::types::ClusterSettingName::ContainerInsights)
                .value("sometimes")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        bad.into_service_error().meta().code(),
        Some("InvalidParameterException")
    );

    let list = ecs.list_clusters().send().await.unwrap();
    assert_eq!(
        list.cluster_arns(),
        &["arn:aws:ecs:us-east-1:111111111111:cluster/web".to_string()]
    );

    let deleted = ecs.delete_cluster().cluster("web").send().await.unwrap();
    assert_eq!(deleted.cluster.unwrap().status(), Some("INACTIVE"));
    let d = ecs
        .describe_clusters()
        .clusters("web")
        .send()
        .await
        .unwrap();
    assert_eq!(d.clusters()[0].status(), Some("INACTIVE"));
    assert!(ecs
        .list_clusters()
        .send()
        .await
        .unwrap()
        .cluster_arns()
        .is_empty());

    // An INACTIVE cluster accepts no work.
    let err = ecs.list_tasks().cluster("web").send().await.unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("ClusterNotFoundException")
    );
}

#[tokio::test]
async fn invalid_cluster_name_is_rejected() {
    let server = TestServer::start().await;
    let err = server
        .sdk(&ALICE)
        .create_cluster()
        .cluster_name("has space")
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert_eq!(err.meta().code(), Some("InvalidParameterException"));
    assert!(
        err.meta().message().unwrap().contains("letters"),
        "{:?}",
        err.meta().message()
    );
}

#[tokio::test]
async fn task_definitions_revisions_and_lists() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    for _ in 0..3 {
        ecs.register_task_definition()
            .family("web")
            .container_definitions(container("app"))
            .tags(Tag::builder().key("v").value("1").build())
            .send()
            .await
            .unwrap();
    }
    let r = ecs
        .register_task_definition()
        .family("worker")
        .container_definitions(container("w"))
        .send()
        .await
        .unwrap();
    let td = r.task_definition.unwrap();
    assert_eq!(td.revision(), 1);
    assert_eq!(td.status(), Some(&TaskDefinitionStatus::Active));
    assert_eq!(
        td.task_definition_arn(),
        Some("arn:aws:ecs:us-east-1:111111111111:task-definition/worker:1")
    );
    assert!(td.registered_at().is_some());
    assert_eq!(
        td.registered_by(),
        Some("arn:aws:iam::111111111111:user/alice")
    );
    let c = &td.container_definitions()[0];
    assert_eq!(c.environment()[0].value(), Some("hello"));

    // Latest revision by family; a given revision; by ARN; with tags.
    let latest = ecs
        .describe_task_definition()
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.task_definition.unwrap().revision(), 3);
    let two = ecs
        .describe_task_definition()
        .task_definition("web:2")
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(two.task_definition.as_ref().unwrap().revision(), 2);
    assert_eq!(two.tags()[0].key(), Some("v"));
    let by_arn = ecs
        .describe_task_definition()
        .task_definition("arn:aws:ecs:us-east-1:111111111111:task-definition/web:1")
        .send()
        .await
        .unwrap();
    assert_eq!(by_arn.task_definition.unwrap().revision(), 1);
    let missing = ecs
        .describe_task_definition()
        .task_definition("web:9")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        missing.into_service_error().meta().code(),
        Some("ClientException")
    );

    let desc = ecs
        .list_task_definitions()
        .sort(SortOrder::Desc)
        .send()
        .await
        .unwrap();
    assert_eq!(
        desc.task_definition_arns()[0],
        "arn:aws:ecs:us-east-1:111111111111:task-definition/worker:1"
    );
    assert_eq!(
        desc.task_definition_arns()[1],
        "arn:aws:ecs:us-east-1:111111111111:task-definition/web:3"
    );
    let fam = ecs
        .list_task_definitions()
        .family_prefix("web")
        .send()
        .await
        .unwrap();
    assert_eq!(fam.task_definition_arns().len(), 3);

    // Deregister: INACTIVE, out of the ACTIVE list, describable; then delete.
    let d = ecs
        .deregister_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.task_definition.unwrap().status(),
        Some(&TaskDefinitionStatus::Inactive)
    );
    let active = ecs
        .list_task_definitions()
        .family_prefix("web")
        .send()
        .await
        .unwrap();
    assert_eq!(active.task_definition_arns().len(), 2);
    let inactive = ecs
        .list_task_definitions()
        .status(TaskDefinitionStatus::Inactive)
        .send()
        .await
        .unwrap();
    assert_eq!(
        inactive.task_definition_arns(),
        &["arn:aws:ecs:us-east-1:111111111111:task-definition/web:1".to_string()]
    );

    let del = ecs
        .delete_task_definitions()
        .task_definitions("web:1")
        .task_definitions("web:2")
        .send()
        .await
        .unwrap();
    assert_eq!(del.task_definitions().len(), 1);
    assert_eq!(
        del.task_definitions()[0].status(),
        Some(&TaskDefinitionStatus::DeleteInProgress)
    );
    assert_eq!(del.failures().len(), 1, "web:2 is still ACTIVE");

    // Revision numbers are never reused after a delete.
    let again = ecs
        .register_task_definition()
        .family("web")
        .container_definitions(container("app"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.task_definition.unwrap().revision(), 4);

    let fams = ecs.list_task_definition_families().send().await.unwrap();
    assert_eq!(fams.families(), &["web".to_string(), "worker".to_string()]);
    let fams = ecs
        .list_task_definition_families()
        .family_prefix("wo")
        .status(TaskDefinitionFamilyStatus::Active)
        .send()
        .await
        .unwrap();
    assert_eq!(fams.families(), &["worker".to_string()]);
}

#[tokio::test]
async fn task_definition_rules_are_enforced() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    let err = ecs
        .register_task_definition()
        .family("dup")
        .container_definitions(container("a"))
        .container_definitions(container("a"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.meta().code(), Some("ClientException"));
    assert!(
        err.meta().message().unwrap_or_default().contains("a"),
        "{:?}",
        err.meta().message()
    );
    // Nothing was registered.
    let list = ecs.list_task_definitions().send().await.unwrap();
    assert!(list.task_definition_arns().is_empty());
}

#[tokio::test]
async fn pagination_walks_more_than_100_items() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    for i in 0..130 {
        ecs.create_cluster()
            .cluster_name(format!("c{i:03}"))
            .send()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = ecs
            .list_clusters()
            .max_results(40)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.cluster_arns().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 130);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 130, "no duplicates across pages");

    // The SDK's own paginator sees the same.
    let all: Vec<_> = ecs
        .list_clusters()
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(all.len(), 130);

    let bad = ecs
        .list_clusters()
        .max_results(101)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        bad.into_service_error().meta().code(),
        Some("InvalidParameterException")
    );
    let bad = ecs
        .list_clusters()
        .next_token("%%%")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        bad.into_service_error().meta().code(),
        Some("InvalidParameterException")
    );
}

#[tokio::test]
async fn accounts_are_isolated() {
    let server = TestServer::start().await;
    let alice = server.sdk(&ALICE);
    let bob = server.sdk(&BOB);
    alice
        .create_cluster()
        .cluster_name("shared-name")
        .send()
        .await
        .unwrap();
    alice
        .register_task_definition()
        .family("secret")
        .container_definitions(container("a"))
        .send()
        .await
        .unwrap();

    assert!(bob
        .list_clusters()
        .send()
        .await
        .unwrap()
        .cluster_arns()
        .is_empty());
    let d = bob
        .describe_clusters()
        .clusters("shared-name")
        .send()
        .await
        .unwrap();
    assert!(d.clusters().is_empty());
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    // Even by Alice's ARN.
    let d = bob
        .describe_clusters()
        .clusters("arn:aws:ecs:us-east-1:111111111111:cluster/shared-name")
        .send()
        .await
        .unwrap();
    assert!(d.clusters().is_empty());
    assert!(bob
        .describe_task_definition()
        .task_definition("secret")
        .send()
        .await
        .is_err());
    assert!(bob
        .list_tags_for_resource()
        .resource_arn("arn:aws:ecs:us-east-1:111111111111:cluster/shared-name")
        .send()
        .await
        .is_err());

    // Bob's own cluster of the same name is his own.
    let b = bob
        .create_cluster()
        .cluster_name("shared-name")
        .send()
        .await
        .unwrap();
    assert_eq!(
        b.cluster.unwrap().cluster_arn(),
        Some("arn:aws:ecs:us-east-1:222222222222:cluster/shared-name")
    );
    assert_eq!(
        alice
            .list_clusters()
            .send()
            .await
            .unwrap()
            .cluster_arns()
            .len(),
        1
    );
}

#[tokio::test]
async fn container_instances_attributes_and_state() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster()
        .cluster_name("hosts")
        .send()
        .await
        .unwrap();
    let doc = r#"{"instanceId":"i-0123456789abcdef0","availabilityZone":"us-east-1b","instanceType":"m5.large","region":"us-east-1"}"#;
    let reg = ecs
        .register_container_instance()
        .cluster("hosts")
        .instance_identity_document(doc)
        .total_resources(
            Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(2048)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(4096)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("PORTS")
                .r#type("STRINGSET")
                .string_set_value("22")
                .build(),
        )
        .attributes(
            aws_sdk_ecs::types::Attribute::builder()
                .name("ecs.os-type")
                .value("linux")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ci = reg.container_instance.unwrap();
    let arn = ci.container_instance_arn().unwrap().to_string();
    assert_eq!(ci.ec2_instance_id(), Some("i-0123456789abcdef0"));
    assert_eq!(ci.status(), Some("ACTIVE"));
    let az = ci
        .attributes()
        .iter()
        .find(|a| a.name() == "ecs.availability-zone")
        .unwrap();
    assert_eq!(az.value(), Some("us-east-1b"));
    let cpu = ci
        .remaining_resources()
        .iter()
        .find(|r| r.name() == Some("CPU"))
        .unwrap();
    assert_eq!(cpu.integer_value(), 2048);

    // Same EC2 instance registering again gets the same container instance.
    let again = ecs
        .register_container_instance()
        .cluster("hosts")
        .instance_identity_document(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.container_instance.unwrap().container_instance_arn(),
        Some(arn.as_str())
    );

    ecs.put_attributes()
        .cluster("hosts")
        .attributes(
            aws_sdk_ecs::types::Attribute::builder()
                .name("stack")
                .value("prod")
                .target_id(&arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let attrs = ecs
        .list_attributes()
        .cluster("hosts")
        .target_type(aws_sdk_ecs::types::TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.attributes().len(), 1);
    assert_eq!(attrs.attributes()[0].value(), Some("prod"));
    let missing_target = ecs
        .put_attributes()
        .cluster("hosts")
        .attributes(
            aws_sdk_ecs::types::Attribute::builder()
                .name("x")
                .value("y")
                .target_id("nope")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        missing_target.into_service_error().meta().code(),
        Some("TargetNotFoundException")
    );
    ecs.delete_attributes()
        .cluster("hosts")
        .attributes(
            aws_sdk_ecs::types::Attribute::builder()
                .name("stack")
                .target_id(&arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let attrs = ecs
        .list_attributes()
        .cluster("hosts")
        .target_type(aws_sdk_ecs::types::TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await
        .unwrap();
    assert!(attrs.attributes().is_empty());

    let drained = ecs
        .update_container_instances_state()
        .cluster("hosts")
        .container_instances(&arn)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(drained.container_instances()[0].status(), Some("DRAINING"));
    let listed = ecs
        .list_container_instances()
        .cluster("hosts")
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.container_instance_arns(), std::slice::from_ref(&arn));
    let listed = ecs
        .list_container_instances()
        .cluster("hosts")
        .status(ContainerInstanceStatus::Active)
        .send()
        .await
        .unwrap();
    assert!(listed.container_instance_arns().is_empty());

    // A cluster with instances cannot be deleted.
    let err = ecs
        .delete_cluster()
        .cluster("hosts")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("ClusterContainsContainerInstancesException")
    );

    let dereg = ecs
        .deregister_container_instance()
        .cluster("hosts")
        .container_instance(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(dereg.container_instance.unwrap().status(), Some("INACTIVE"));
    let d = ecs
        .describe_container_instances()
        .cluster("hosts")
        .container_instances(&arn)
        .container_instances("gone")
        .send()
        .await
        .unwrap();
    assert_eq!(d.container_instances()[0].status(), Some("INACTIVE"));
    assert_eq!(d.failures()[0].reason(), Some("MISSING"));
    ecs.delete_cluster().cluster("hosts").send().await.unwrap();
}

#[tokio::test]
async fn tags_on_every_resource() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    let c = ecs
        .create_cluster()
        .cluster_name("t")
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    let td = ecs
        .register_task_definition()
        .family("f")
        .container_definitions(container("a"))
        .send()
        .await
        .unwrap();
    for arn in [
        c.cluster_arn().unwrap(),
        td.task_definition.unwrap().task_definition_arn().unwrap(),
    ] {
        ecs.tag_resource()
            .resource_arn(arn)
            .tags(Tag::builder().key("a").value("1").build())
            .tags(Tag::builder().key("b").value("2").build())
            .send()
            .await
            .unwrap();
        ecs.untag_resource()
            .resource_arn(arn)
            .tag_keys("a")
            .send()
            .await
            .unwrap();
        let tags = ecs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(tags.tags().len(), 1, "{arn}");
        assert_eq!(tags.tags()[0].key(), Some("b"));
    }
    let err = ecs
        .tag_resource()
        .resource_arn(c.cluster_arn().unwrap())
        .tags(Tag::builder().key("aws:reserved").value("x").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("InvalidParameterException")
    );
    let err = ecs
        .list_tags_for_resource()
        .resource_arn("arn:aws:ecs:us-east-1:111111111111:cluster/none")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn account_settings() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    use aws_sdk_ecs::types::SettingName;
    ecs.put_account_setting_default()
        .name(SettingName::ContainerInsights)
        .value("enabled")
        .send()
        .await
        .unwrap();
    let eff = ecs
        .list_account_settings()
        .effective_settings(true)
        .name(SettingName::ContainerInsights)
        .send()
        .await
        .unwrap();
    assert_eq!(eff.settings()[0].value(), Some("enabled"));
    ecs.put_account_setting()
        .name(SettingName::ContainerInsights)
        .value("disabled")
        .send()
        .await
        .unwrap();
    let eff = ecs
        .list_account_settings()
        .effective_settings(true)
        .name(SettingName::ContainerInsights)
        .send()
        .await
        .unwrap();
    assert_eq!(
        eff.settings()[0].value(),
        Some("disabled"),
        "the principal's own setting wins"
    );
    ecs.delete_account_setting()
        .name(SettingName::ContainerInsights)
        .send()
        .await
        .unwrap();
    let eff = ecs
        .list_account_settings()
        .effective_settings(true)
        .name(SettingName::ContainerInsights)
        .send()
        .await
        .unwrap();
    assert_eq!(eff.settings()[0].value(), Some("enabled"));
    let bad = ecs
        .put_account_setting()
        .name(SettingName::ContainerInsights)
        .value("maybe")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        bad.into_service_error().meta().code(),
        Some("InvalidParameterException")
    );
    let all = ecs
        .list_account_settings()
        .effective_settings(true)
        .send()
        .await
        .unwrap();
    assert!(all.settings().len() >= 5);
}

#[tokio::test]
async fn state_survives_restart() {
    let server = TestServer::start().await;
    let dir = server.data_dir.clone();
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster()
        .cluster_name("keep")
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("keep")
        .container_definitions(container("a"))
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("keep")
        .container_definitions(container("a"))
        .send()
        .await
        .unwrap();
    let tmp = server.stop().await;

    let server = TestServer::start_in(dir).await;
    let ecs = server.sdk(&ALICE);
    let d = ecs
        .describe_clusters()
        .clusters("keep")
        .send()
        .await
        .unwrap();
    assert_eq!(d.clusters()[0].status(), Some("ACTIVE"));
    let td = ecs
        .register_task_definition()
        .family("keep")
        .container_definitions(container("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        td.task_definition.unwrap().revision(),
        3,
        "revision numbers continue after a restart"
    );
    drop(tmp);
}

async fn register_host(ecs: &aws_sdk_ecs::Client, cluster: &str, az: &str, itype: &str) -> String {
    let r = ecs
        .register_container_instance()
        .cluster(cluster)
        .total_resources(
            Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(1024)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(2048)
                .build(),
        )
        .attributes(
            aws_sdk_ecs::types::Attribute::builder()
                .name("ecs.availability-zone")
                .value(az)
                .build()
                .unwrap(),
        )
        .attributes(
            aws_sdk_ecs::types::Attribute::builder()
                .name("ecs.instance-type")
                .value(itype)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    r.container_instance
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn list_container_instances_filter_speaks_the_cluster_query_language() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().cluster_name("q").send().await.unwrap();
    let a = register_host(&ecs, "q", "us-east-1a", "t3.small").await;
    let b = register_host(&ecs, "q", "us-east-1b", "m5.large").await;
    let c = register_host(&ecs, "q", "us-east-1c", "t3.large").await;
    let list = |f: &'static str| {
        let ecs = ecs.clone();
        async move {
            let mut v = ecs
                .list_container_instances()
                .cluster("q")
                .filter(f)
                .send()
                .await
                .unwrap()
                .container_instance_arns()
                .to_vec();
            v.sort();
            v
        }
    };
    let mut t3 = vec![a.clone(), c.clone()];
    t3.sort();
    assert_eq!(list("attribute:ecs.instance-type =~ t3.*").await, t3);
    assert_eq!(
        list("attribute:ecs.availability-zone in [us-east-1b]").await,
        vec![b.clone()]
    );
    assert_eq!(
        list("not(attribute:ecs.instance-type =~ t3.*) and agentConnected == false").await,
        vec![b.clone()]
    );
    let err = ecs
        .list_container_instances()
        .cluster("q")
        .filter("attribute:ecs.instance-type ==")
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert_eq!(err.meta().code(), Some("InvalidParameterException"));
    assert!(
        err.meta()
            .message()
            .unwrap_or_default()
            .contains("position"),
        "{:?}",
        err.meta().message()
    );
}

#[tokio::test]
async fn agent_calls_and_cluster_deletion_guards() {
    let server = TestServer::start().await;
    let ecs = server.sdk(&ALICE);
    ecs.create_cluster().cluster_name("g").send().await.unwrap();
    let host = register_host(&ecs, "g", "us-east-1a", "t3.small").await;
    let poll = ecs
        .discover_poll_endpoint()
        .cluster("g")
        .container_instance(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(poll.endpoint(), Some(server.endpoint.as_str()));

    // StartTask names the instance; with no agent connected there, placement says so.
    ecs.register_task_definition()
        .family("job")
        .container_definitions(container("app"))
        .send()
        .await
        .unwrap();
    let started = ecs
        .start_task()
        .cluster("g")
        .task_definition("job")
        .container_instances(&host)
        .send()
        .await
        .unwrap();
    assert!(started.tasks().is_empty());
    assert_eq!(started.failures()[0].reason(), Some("AGENT"));

    // A service blocks deletion of its cluster.
    ecs.create_service()
        .cluster("g")
        .service_name("s")
        .task_definition("job")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    ecs.deregister_container_instance()
        .cluster("g")
        .container_instance(&host)
        .force(true)
        .send()
        .await
        .unwrap();
    let err = ecs.delete_cluster().cluster("g").send().await.unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("ClusterContainsServicesException")
    );
    let s = ecs
        .delete_service()
        .cluster("g")
        .service("s")
        .send()
        .await
        .unwrap();
    assert_eq!(s.service.unwrap().status(), Some("DRAINING"));
}
