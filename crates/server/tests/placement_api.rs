//! Placement end to end: RunTask and services through the real API (SDK and
//! raw signed requests), on simulated agents of chosen sizes and attributes.
//! Every assertion reads where tasks landed back through the API: a task's
//! `containerInstanceArn` from DescribeTasks, that instance's attributes from
//! DescribeContainerInstances. Each test host carries a `name` attribute, so
//! the assertions speak of hosts by name.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::types::builders::ContainerDefinitionBuilder;
use aws_sdk_ecs::types::{
    Attribute, ContainerDefinition, ContainerInstanceStatus, PlacementConstraint,
    PlacementConstraintType, PlacementStrategy, PlacementStrategyType, PortMapping, Service,
    TaskDefinitionPlacementConstraint, TaskDefinitionPlacementConstraintType,
};
use common::{eventually, TestServer, ALICE};
use flotilla_sim::{Behaviour, HostSpec, SimAgent};
use serde_json::{json, Value};
use support::{assert_error, send_json};

const CLUSTER: &str = "default";
/// The attribute every test host carries: its name in the assertions.
const NAME: &str = "name";
const ZONE: &str = "ecs.availability-zone";

fn fast() -> flotilla_server::Config {
    let mut c = flotilla_server::Config::default();
    c.controllers.lost_host_grace = Duration::from_millis(500);
    c
}

/// A host named `name` with `cpu` units and `memory` MiB.
fn host(name: &str, cpu: i32, memory: i32) -> HostSpec {
    HostSpec::new(CLUSTER, cpu, memory).attribute(NAME, name)
}

/// A roomy host in `zone`.
fn zoned(name: &str, zone: &str) -> HostSpec {
    host(name, 4096, 8192).attribute(ZONE, zone)
}

/// The one container of a test task definition.
fn app(cpu: i32, memory: i32) -> ContainerDefinitionBuilder {
    ContainerDefinition::builder()
        .name("app")
        .image("flotilla-test:latest")
        .cpu(cpu)
        .memory(memory)
}

fn binpack(field: &str) -> PlacementStrategy {
    PlacementStrategy::builder()
        .r#type(PlacementStrategyType::Binpack)
        .field(field)
        .build()
}

fn spread(field: &str) -> PlacementStrategy {
    PlacementStrategy::builder()
        .r#type(PlacementStrategyType::Spread)
        .field(field)
        .build()
}

fn random() -> PlacementStrategy {
    PlacementStrategy::builder()
        .r#type(PlacementStrategyType::Random)
        .build()
}

fn member_of(expression: &str) -> PlacementConstraint {
    PlacementConstraint::builder()
        .r#type(PlacementConstraintType::MemberOf)
        .expression(expression)
        .build()
}

fn distinct_instance() -> PlacementConstraint {
    PlacementConstraint::builder()
        .r#type(PlacementConstraintType::DistinctInstance)
        .build()
}

/// How many times each value occurs.
fn tally<S: AsRef<str>>(values: &[S]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in values {
        *out.entry(v.as_ref().to_string()).or_insert(0) += 1;
    }
    out
}

fn counts<const N: usize>(pairs: [(&str, usize); N]) -> BTreeMap<String, usize> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn task_arns(out: &RunTaskOutput) -> Vec<String> {
    out.tasks()
        .iter()
        .map(|t| t.task_arn().unwrap_or_default().to_string())
        .collect()
}

fn reasons(out: &RunTaskOutput) -> Vec<&str> {
    out.failures()
        .iter()
        .map(|f| f.reason().unwrap_or_default())
        .collect()
}

fn events(s: &Service) -> Vec<String> {
    s.events()
        .iter()
        .map(|e| e.message().unwrap_or_default().to_string())
        .collect()
}

fn stable(s: &Service) -> bool {
    s.deployments().len() == 1 && s.running_count() == s.desired_count() && s.pending_count() == 0
}

/// A server with simulated hosts attached, known by name.
struct Fleet {
    server: TestServer,
    ecs: aws_sdk_ecs::Client,
    agents: BTreeMap<String, SimAgent>,
}

impl Fleet {
    async fn start(hosts: impl IntoIterator<Item = HostSpec>) -> Fleet {
        let server = TestServer::start_with(fast()).await;
        let ecs = server.sdk(&ALICE);
        ecs.create_cluster().send().await.unwrap();
        let mut fleet = Fleet {
            server,
            ecs,
            agents: BTreeMap::new(),
        };
        for spec in hosts {
            fleet.add(spec).await;
        }
        fleet
    }

    async fn add(&mut self, spec: HostSpec) {
        let name = spec.attributes[NAME].clone();
        let agent = SimAgent::start(&self.server.raw(&ALICE), spec, Behaviour::default())
            .await
            .unwrap();
        self.agents.insert(name, agent);
    }

    fn arn(&self, name: &str) -> String {
        self.agents[name].instance_arn.clone()
    }

    async fn task_definition(&self, family: &str, container: ContainerDefinitionBuilder) -> String {
        let r = self
            .ecs
            .register_task_definition()
            .family(family)
            .container_definitions(container.build())
            .send()
            .await
            .unwrap();
        r.task_definition
            .unwrap()
            .task_definition_arn()
            .unwrap()
            .to_string()
    }

    fn run_task(&self, td: &str, count: i32) -> RunTaskFluentBuilder {
        self.ecs
            .run_task()
            .cluster(CLUSTER)
            .task_definition(td)
            .count(count)
    }

    /// The value of `attribute` on each task's instance, in task order.
    async fn landed(&self, tasks: &[String], attribute: &str) -> Vec<String> {
        if tasks.is_empty() {
            return Vec::new();
        }
        let d = self
            .ecs
            .describe_tasks()
            .cluster(CLUSTER)
            .set_tasks(Some(tasks.to_vec()))
            .send()
            .await
            .unwrap();
        assert!(d.failures().is_empty(), "{:?}", d.failures());
        let instances: BTreeSet<String> = d
            .tasks()
            .iter()
            .map(|t| t.container_instance_arn().unwrap().to_string())
            .collect();
        let ci = self
            .ecs
            .describe_container_instances()
            .cluster(CLUSTER)
            .set_container_instances(Some(instances.into_iter().collect()));
        let ci = ci.send().await.unwrap();
        let value_on = |arn: &str| {
            let i = ci
                .container_instances()
                .iter()
                .find(|i| i.container_instance_arn() == Some(arn))
                .expect("described");
            let a = i.attributes().iter().find(|a| a.name() == attribute);
            a.and_then(|a| a.value()).unwrap_or("(none)").to_string()
        };
        // DescribeTasks answers in its own order; keep the caller's.
        tasks
            .iter()
            .map(|arn| {
                let t = d
                    .tasks()
                    .iter()
                    .find(|t| t.task_arn() == Some(arn.as_str()))
                    .expect("described");
                value_on(t.container_instance_arn().unwrap())
            })
            .collect()
    }

    /// The names of the hosts a RunTask's tasks landed on, in task order.
    async fn hosts_of(&self, out: &RunTaskOutput) -> Vec<String> {
        self.landed(&task_arns(out), NAME).await
    }

    async fn wait_running(&self, tasks: &[String]) {
        eventually(5, "tasks RUNNING", || async {
            let d = self
                .ecs
                .describe_tasks()
                .cluster(CLUSTER)
                .set_tasks(Some(tasks.to_vec()))
                .send()
                .await
                .unwrap();
            d.tasks()
                .iter()
                .all(|t| t.last_status() == Some("RUNNING"))
                .then_some(())
        })
        .await;
    }

    async fn remaining_memory(&self, name: &str) -> i32 {
        let d = self
            .ecs
            .describe_container_instances()
            .cluster(CLUSTER)
            .container_instances(self.arn(name))
            .send()
            .await
            .unwrap();
        let i = &d.container_instances()[0];
        i.remaining_resources()
            .iter()
            .find(|r| r.name() == Some("MEMORY"))
            .map(|r| r.integer_value())
            .unwrap()
    }

    async fn set_status(&self, name: &str, status: ContainerInstanceStatus) {
        self.ecs
            .update_container_instances_state()
            .cluster(CLUSTER)
            .container_instances(self.arn(name))
            .status(status)
            .send()
            .await
            .unwrap();
    }

    async fn service(&self, name: &str) -> Service {
        let d = self
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .services(name)
            .send()
            .await
            .unwrap();
        d.services()[0].clone()
    }

    /// The service's tasks that are meant to run.
    async fn service_tasks(&self, name: &str) -> Vec<String> {
        let l = self
            .ecs
            .list_tasks()
            .cluster(CLUSTER)
            .service_name(name)
            .send()
            .await
            .unwrap();
        l.task_arns().to_vec()
    }

    /// Waits until the service runs `desired` tasks and nothing else is under way.
    async fn wait_stable(&self, name: &str, desired: i32) -> Service {
        eventually(10, &format!("{name} stable at {desired}"), || async {
            let s = self.service(name).await;
            let listed = self.service_tasks(name).await.len();
            (stable(&s) && s.desired_count() == desired && listed == desired as usize).then_some(s)
        })
        .await
    }
}

// ---------------------------------------------------------------- strategies

#[tokio::test]
async fn binpack_memory_fills_the_fullest_feasible_instance_first() {
    // "tiny" has the least memory of all but cannot take a task at all.
    let fleet = Fleet::start([
        host("tiny", 4096, 256),
        host("small", 4096, 2048),
        host("mid", 4096, 3072),
        host("big", 4096, 4096),
    ])
    .await;
    let td = fleet.task_definition("web", app(0, 512)).await;

    let out = fleet
        .run_task(&td, 6)
        .placement_strategy(binpack("memory"))
        .send()
        .await
        .unwrap();
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    let hosts = fleet.hosts_of(&out).await;
    assert_eq!(
        hosts,
        ["small", "small", "small", "small", "mid", "mid"],
        "small until full, then the next fullest"
    );
    assert_eq!(fleet.remaining_memory("small").await, 0);
    assert_eq!(fleet.remaining_memory("mid").await, 2048);
    assert_eq!(fleet.remaining_memory("big").await, 4096);

    // A later call packs onto what is left: mid (2048 left) before big (4096).
    let out = fleet
        .run_task(&td, 1)
        .placement_strategy(binpack("memory"))
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.hosts_of(&out).await, ["mid"]);
    fleet.wait_running(&task_arns(&out)).await;
}

#[tokio::test]
async fn binpack_cpu_fills_the_fullest_feasible_instance_first() {
    let fleet = Fleet::start([
        host("tiny", 256, 8192),
        host("c1", 1024, 8192),
        host("c2", 2048, 8192),
        host("c4", 4096, 8192),
    ])
    .await;
    let td = fleet.task_definition("web", app(512, 64)).await;
    let out = fleet
        .run_task(&td, 5)
        .placement_strategy(binpack("cpu"))
        .send()
        .await
        .unwrap();
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    assert_eq!(fleet.hosts_of(&out).await, ["c1", "c1", "c2", "c2", "c2"]);
}

#[tokio::test]
async fn spread_by_zone_keeps_zones_within_one_task_of_each_other() {
    // Uneven zones: three hosts in a, two in b, one in c.
    let fleet = Fleet::start([
        zoned("a1", "us-east-1a"),
        zoned("a2", "us-east-1a"),
        zoned("a3", "us-east-1a"),
        zoned("b1", "us-east-1b"),
        zoned("b2", "us-east-1b"),
        zoned("c1", "us-east-1c"),
    ])
    .await;
    let td = fleet.task_definition("web", app(0, 128)).await;
    let by_zone = spread("attribute:ecs.availability-zone");

    let first = fleet
        .run_task(&td, 10)
        .placement_strategy(by_zone.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.tasks().len(), 10, "{:?}", first.failures());
    let zones = tally(&fleet.landed(&task_arns(&first), ZONE).await);
    assert_eq!(zones.len(), 3, "{zones:?}");
    let (min, max) = (zones.values().min().unwrap(), zones.values().max().unwrap());
    assert!(
        max - min <= 1,
        "zones within one task of each other: {zones:?}"
    );

    // The spread counts the tasks already there (same group): 15 in all is 5 each.
    let second = fleet
        .run_task(&td, 5)
        .placement_strategy(by_zone)
        .send()
        .await
        .unwrap();
    let all: Vec<String> = task_arns(&first)
        .into_iter()
        .chain(task_arns(&second))
        .collect();
    let zones = tally(&fleet.landed(&all, ZONE).await);
    assert_eq!(
        zones,
        counts([("us-east-1a", 5), ("us-east-1b", 5), ("us-east-1c", 5)])
    );
}

#[tokio::test]
async fn spread_by_instance_id_gives_every_instance_its_share() {
    let fleet = Fleet::start((1..=4).map(|i| host(&format!("h{i}"), 4096, 8192))).await;
    let td = fleet.task_definition("web", app(0, 128)).await;
    let out = fleet
        .run_task(&td, 8)
        .placement_strategy(spread("instanceId"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tally(&fleet.hosts_of(&out).await),
        counts([("h1", 2), ("h2", 2), ("h3", 2), ("h4", 2)])
    );
    // `host` is the same field.
    let more = fleet
        .run_task(&td, 4)
        .placement_strategy(spread("host"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tally(&fleet.hosts_of(&more).await),
        counts([("h1", 1), ("h2", 1), ("h3", 1), ("h4", 1)])
    );
}

#[tokio::test]
async fn random_places_every_task_and_only_on_feasible_instances() {
    // Each roomy host takes four tasks; the tiny ones take none.
    let fleet = Fleet::start([
        host("r1", 4096, 2048),
        host("r2", 4096, 2048),
        host("r3", 4096, 2048),
        host("tiny1", 4096, 256),
        host("tiny2", 4096, 256),
    ])
    .await;
    let td = fleet.task_definition("web", app(0, 512)).await;
    let out = fleet
        .run_task(&td, 10)
        .placement_strategy(random())
        .send()
        .await
        .unwrap();
    assert!(out.failures().is_empty(), "{:?}", out.failures());
    assert_eq!(out.tasks().len(), 10);
    let per_host = tally(&fleet.hosts_of(&out).await);
    assert!(
        per_host.keys().all(|h| h.starts_with('r')),
        "only feasible hosts: {per_host:?}"
    );
    assert!(
        per_host.values().all(|&n| n <= 4),
        "no host over-committed: {per_host:?}"
    );
    fleet.wait_running(&task_arns(&out)).await;
}

#[tokio::test]
async fn chained_strategies_spread_by_zone_then_binpack_memory() {
    let fleet = Fleet::start([
        host("a-big", 4096, 8192).attribute(ZONE, "us-east-1a"),
        host("a-small", 4096, 2048).attribute(ZONE, "us-east-1a"),
        host("b-big", 4096, 8192).attribute(ZONE, "us-east-1b"),
        host("b-small", 4096, 2048).attribute(ZONE, "us-east-1b"),
    ])
    .await;
    let td = fleet.task_definition("web", app(0, 256)).await;
    let out = fleet
        .run_task(&td, 4)
        .placement_strategy(spread("attribute:ecs.availability-zone"))
        .placement_strategy(binpack("memory"))
        .send()
        .await
        .unwrap();
    // Two per zone, and within each zone the fuller host.
    assert_eq!(
        tally(&fleet.hosts_of(&out).await),
        counts([("a-small", 2), ("b-small", 2)])
    );
}

// --------------------------------------------------------------- constraints

#[tokio::test]
async fn distinct_instance_places_one_per_instance_and_fails_the_rest() {
    let fleet = Fleet::start((1..=3).map(|i| host(&format!("h{i}"), 4096, 8192))).await;
    let td = fleet.task_definition("web", app(0, 128)).await;

    let out = fleet
        .run_task(&td, 5)
        .placement_constraints(distinct_instance())
        .send()
        .await
        .unwrap();
    let hosts: BTreeSet<String> = fleet.hosts_of(&out).await.into_iter().collect();
    assert_eq!(hosts.len(), 3, "one task on each instance: {hosts:?}");
    assert_eq!(out.tasks().len(), 3);
    assert_eq!(
        reasons(&out),
        ["DistinctInstance placement constraint unsatisfied"; 2]
    );
    let named = out.failures()[0].arn().unwrap_or_default();
    assert!(
        fleet.agents.values().any(|a| a.instance_arn == named),
        "the failure names an instance: {named}"
    );

    // The group is full everywhere; another group is not.
    let again = fleet
        .run_task(&td, 1)
        .placement_constraints(distinct_instance())
        .send()
        .await
        .unwrap();
    assert!(again.tasks().is_empty());
    assert_eq!(
        reasons(&again),
        ["DistinctInstance placement constraint unsatisfied"]
    );
    let other = fleet
        .run_task(&td, 3)
        .group("batch")
        .placement_constraints(distinct_instance())
        .send()
        .await
        .unwrap();
    assert_eq!(other.tasks().len(), 3, "{:?}", other.failures());
}

#[tokio::test]
async fn member_of_expressions_select_instances_by_attribute() {
    let fleet = Fleet::start([
        zoned("p1", "us-east-1a").attribute("stack", "prod"),
        zoned("p2", "us-east-1b").attribute("stack", "prod"),
        zoned("d1", "us-east-1c").attribute("stack", "dev"),
        zoned("d2", "us-east-1a").attribute("stack", "dev"),
    ])
    .await;
    // A custom attribute put after registration counts too.
    let gold = Attribute::builder()
        .name("tier")
        .value("gold")
        .target_id(fleet.arn("d1"))
        .build()
        .unwrap();
    fleet
        .ecs
        .put_attributes()
        .cluster(CLUSTER)
        .attributes(gold)
        .send()
        .await
        .unwrap();
    let td = fleet.task_definition("web", app(0, 128)).await;

    let cases: &[(&str, &[&str])] = &[
        ("attribute:stack == prod", &["p1", "p2"]),
        (
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
            &["d2", "p1", "p2"],
        ),
        ("not(attribute:stack == prod)", &["d1", "d2"]),
        (
            "attribute:stack == dev and attribute:ecs.availability-zone != us-east-1a",
            &["d1"],
        ),
        ("attribute:stack =~ pro.*", &["p1", "p2"]),
        ("attribute:tier == gold", &["d1"]),
        (
            "attribute:tier exists || attribute:ecs.availability-zone == us-east-1b",
            &["d1", "p2"],
        ),
    ];
    for (i, (expression, expected)) in cases.iter().enumerate() {
        // Spread over instances, one group per case: every matching instance gets a task.
        let out = fleet
            .run_task(&td, 6)
            .group(format!("case{i}"))
            .placement_constraints(member_of(expression))
            .placement_strategy(spread("instanceId"))
            .send()
            .await
            .unwrap();
        assert!(
            out.failures().is_empty(),
            "{expression}: {:?}",
            out.failures()
        );
        let hosts: BTreeSet<String> = fleet.hosts_of(&out).await.into_iter().collect();
        assert_eq!(
            hosts,
            expected.iter().map(|h| h.to_string()).collect(),
            "{expression}"
        );
    }

    // Nothing matches: no task, and the ECS reason for each.
    let out = fleet
        .run_task(&td, 2)
        .placement_constraints(member_of("attribute:stack == staging"))
        .send()
        .await
        .unwrap();
    assert!(out.tasks().is_empty());
    assert_eq!(
        reasons(&out),
        ["MemberOf placement constraint unsatisfied"; 2]
    );

    // Once the attribute is deleted, nothing matches it.
    let gold = Attribute::builder()
        .name("tier")
        .target_id(fleet.arn("d1"))
        .build()
        .unwrap();
    fleet
        .ecs
        .delete_attributes()
        .cluster(CLUSTER)
        .attributes(gold)
        .send()
        .await
        .unwrap();
    let out = fleet
        .run_task(&td, 1)
        .placement_constraints(member_of("attribute:tier == gold"))
        .send()
        .await
        .unwrap();
    assert_eq!(reasons(&out), ["MemberOf placement constraint unsatisfied"]);
}

#[tokio::test]
async fn task_group_expressions_place_beside_or_away_from_a_group() {
    let fleet = Fleet::start((1..=3).map(|i| host(&format!("h{i}"), 4096, 8192))).await;
    let db = fleet.task_definition("db", app(0, 128)).await;
    let web = fleet.task_definition("web", app(0, 128)).await;
    let out = fleet
        .run_task(&db, 1)
        .placement_constraints(member_of("attribute:name == h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.hosts_of(&out).await, ["h2"]);

    let beside = fleet
        .run_task(&web, 3)
        .placement_constraints(member_of("task:group == family:db"))
        .placement_strategy(spread("instanceId"))
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.hosts_of(&beside).await, ["h2", "h2", "h2"]);

    let away = fleet
        .run_task(&web, 4)
        .group("away")
        .placement_constraints(member_of("not(task:group == family:db)"))
        .placement_strategy(spread("instanceId"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tally(&fleet.hosts_of(&away).await),
        counts([("h1", 2), ("h3", 2)])
    );
}

#[tokio::test]
async fn unplaceable_tasks_fail_with_the_ecs_reason() {
    let mut fleet = Fleet::start([host("h1", 1024, 2048), host("h2", 1024, 2048)]).await;
    let port = PortMapping::builder()
        .container_port(80)
        .host_port(8080)
        .build();
    let cases = [
        (
            "RESOURCE:CPU",
            fleet.task_definition("hungry", app(2048, 128)).await,
        ),
        (
            "RESOURCE:MEMORY",
            fleet.task_definition("greedy", app(0, 4096)).await,
        ),
    ];
    for (reason, td) in &cases {
        let out = fleet.run_task(td, 1).send().await.unwrap();
        assert!(out.tasks().is_empty(), "{reason}");
        assert_eq!(reasons(&out), [*reason]);
    }

    // A static host port: one task per host, then no host has the port free.
    let web = fleet
        .task_definition("web", app(0, 128).port_mappings(port))
        .await;
    let out = fleet.run_task(&web, 3).send().await.unwrap();
    assert_eq!(
        tally(&fleet.hosts_of(&out).await),
        counts([("h1", 1), ("h2", 1)])
    );
    assert_eq!(reasons(&out), ["RESOURCE:PORTS"]);
    // Stopping one frees its port.
    fleet.wait_running(&task_arns(&out)).await;
    let on_h1 = out
        .tasks()
        .iter()
        .find(|t| t.container_instance_arn() == Some(fleet.arn("h1").as_str()))
        .unwrap();
    fleet
        .ecs
        .stop_task()
        .cluster(CLUSTER)
        .task(on_h1.task_arn().unwrap())
        .send()
        .await
        .unwrap();
    let again = eventually(5, "port 8080 free on h1", || async {
        let out = fleet.run_task(&web, 1).send().await.unwrap();
        (!out.tasks().is_empty()).then_some(out)
    })
    .await;
    assert_eq!(fleet.hosts_of(&again).await, ["h1"]);

    // Every agent gone: AGENT.
    let names: Vec<String> = fleet.agents.keys().cloned().collect();
    let arns: Vec<String> = names.iter().map(|n| fleet.arn(n)).collect();
    fleet.agents.clear();
    eventually(5, "agents disconnected", || async {
        let d = fleet
            .ecs
            .describe_container_instances()
            .cluster(CLUSTER)
            .set_container_instances(Some(arns.clone()))
            .send()
            .await
            .unwrap();
        d.container_instances()
            .iter()
            .all(|i| !i.agent_connected())
            .then_some(())
    })
    .await;
    let small = fleet.task_definition("small", app(0, 64)).await;
    let out = fleet.run_task(&small, 1).send().await.unwrap();
    assert!(out.tasks().is_empty());
    assert_eq!(reasons(&out), ["AGENT"]);
}

#[tokio::test]
async fn required_attributes_keep_tasks_off_hosts_without_them() {
    let fleet = Fleet::start((1..=3).map(|i| host(&format!("h{i}"), 4096, 8192))).await;
    // Docker labels need Docker Remote API 1.18, which no simulated host advertises.
    let td = fleet
        .task_definition("labelled", app(0, 128).docker_labels("team", "edge"))
        .await;
    let needed = "com.amazonaws.ecs.capability.docker-remote-api.1.18";
    let d = fleet
        .ecs
        .describe_task_definition()
        .task_definition(&td)
        .send()
        .await
        .unwrap();
    let required: Vec<&str> = d
        .task_definition()
        .unwrap()
        .requires_attributes()
        .iter()
        .map(|a| a.name())
        .collect();
    assert!(required.contains(&needed), "{required:?}");

    let out = fleet.run_task(&td, 2).send().await.unwrap();
    assert!(out.tasks().is_empty());
    assert_eq!(reasons(&out), ["ATTRIBUTE"; 2]);

    // h3 gains the capability (a name without a value, as agents report it).
    let capability = Attribute::builder()
        .name(needed)
        .target_id(fleet.arn("h3"))
        .build()
        .unwrap();
    fleet
        .ecs
        .put_attributes()
        .cluster(CLUSTER)
        .attributes(capability)
        .send()
        .await
        .unwrap();
    let out = fleet.run_task(&td, 3).send().await.unwrap();
    assert_eq!(fleet.hosts_of(&out).await, ["h3", "h3", "h3"]);
    fleet.wait_running(&task_arns(&out)).await;
}

#[tokio::test]
async fn task_definition_constraints_bind_every_run() {
    let fleet = Fleet::start([
        host("h1", 4096, 8192).attribute("stack", "prod"),
        host("h2", 4096, 8192),
    ])
    .await;
    let constraint = TaskDefinitionPlacementConstraint::builder()
        .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
        .expression("attribute:stack == prod")
        .build();
    let r = fleet
        .ecs
        .register_task_definition()
        .family("pinned")
        .container_definitions(app(0, 128).build())
        .placement_constraints(constraint)
        .send()
        .await
        .unwrap();
    let td = r
        .task_definition
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    let out = fleet
        .run_task(&td, 4)
        .placement_strategy(spread("instanceId"))
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.hosts_of(&out).await, ["h1"; 4]);
    // The request's constraints add to the definition's: together they match nothing.
    let out = fleet
        .run_task(&td, 1)
        .placement_constraints(member_of("attribute:name == h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(reasons(&out), ["MemberOf placement constraint unsatisfied"]);
}

// ------------------------------------------------------ draining and services

#[tokio::test]
async fn draining_instance_gets_no_new_tasks_and_loses_only_service_tasks() {
    let fleet = Fleet::start([
        zoned("h1", "us-east-1a"),
        zoned("h2", "us-east-1b"),
        zoned("h3", "us-east-1c"),
    ])
    .await;
    let td = fleet.task_definition("web", app(0, 128)).await;
    let job = fleet
        .run_task(&td, 1)
        .placement_constraints(member_of("attribute:name == h1"))
        .send()
        .await
        .unwrap();
    let job = task_arns(&job);
    fleet.wait_running(&job).await;
    fleet
        .ecs
        .create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition(&td)
        .desired_count(3)
        .send()
        .await
        .unwrap();
    fleet.wait_stable("web", 3).await;
    let before = fleet.service_tasks("web").await;
    assert_eq!(
        tally(&fleet.landed(&before, NAME).await),
        counts([("h1", 1), ("h2", 1), ("h3", 1)])
    );

    fleet
        .set_status("h1", ContainerInstanceStatus::Draining)
        .await;
    let h1 = fleet.arn("h1");
    let d = fleet
        .ecs
        .describe_container_instances()
        .cluster(CLUSTER)
        .container_instances(&h1)
        .send()
        .await
        .unwrap();
    assert_eq!(d.container_instances()[0].status(), Some("DRAINING"));

    // The service's task on h1 is replaced elsewhere.
    let now = eventually(10, "service off h1", || async {
        let tasks = fleet.service_tasks("web").await;
        let hosts = fleet.landed(&tasks, NAME).await;
        (stable(&fleet.service("web").await)
            && tasks.len() == 3
            && !hosts.contains(&"h1".to_string()))
        .then_some(hosts)
    })
    .await;
    assert_eq!(tally(&now).values().sum::<usize>(), 3, "{now:?}");
    let old = fleet.landed(&before, NAME).await;
    let drained = &before[old.iter().position(|h| h == "h1").unwrap()];
    let t = eventually(5, "drained task STOPPED", || async {
        let d = fleet
            .ecs
            .describe_tasks()
            .cluster(CLUSTER)
            .tasks(drained)
            .send()
            .await
            .unwrap();
        let t = d.tasks()[0].clone();
        (t.last_status() == Some("STOPPED")).then_some(t)
    })
    .await;
    assert_eq!(
        t.stopped_reason(),
        Some("Container instance is being drained")
    );

    // The standalone task stays.
    let d = fleet
        .ecs
        .describe_tasks()
        .cluster(CLUSTER)
        .set_tasks(Some(job.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (d.tasks()[0].last_status(), d.tasks()[0].desired_status()),
        (Some("RUNNING"), Some("RUNNING"))
    );

    // No new placements on h1, not even when asked for by name.
    let out = fleet
        .run_task(&td, 6)
        .placement_strategy(spread("instanceId"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tally(&fleet.hosts_of(&out).await),
        counts([("h2", 3), ("h3", 3)])
    );
    let out = fleet
        .run_task(&td, 1)
        .placement_constraints(member_of("attribute:name == h1"))
        .send()
        .await
        .unwrap();
    assert!(out.tasks().is_empty(), "placed on a DRAINING instance");

    // ACTIVE again: placeable again.
    fleet
        .set_status("h1", ContainerInstanceStatus::Active)
        .await;
    let out = fleet
        .run_task(&td, 1)
        .placement_constraints(member_of("attribute:name == h1"))
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.hosts_of(&out).await, ["h1"]);
}

#[tokio::test]
async fn service_member_of_places_only_on_matching_instances() {
    let fleet = Fleet::start([
        zoned("p1", "us-east-1a").attribute("stack", "prod"),
        zoned("p2", "us-east-1b").attribute("stack", "prod"),
        zoned("d1", "us-east-1a").attribute("stack", "dev"),
        zoned("d2", "us-east-1b").attribute("stack", "dev"),
    ])
    .await;
    let td = fleet.task_definition("web", app(0, 128)).await;
    fleet
        .ecs
        .create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition(&td)
        .desired_count(4)
        .placement_constraints(member_of("attribute:stack == prod"))
        .send()
        .await
        .unwrap();
    fleet.wait_stable("web", 4).await;
    let tasks = fleet.service_tasks("web").await;
    assert_eq!(
        tally(&fleet.landed(&tasks, NAME).await),
        counts([("p1", 2), ("p2", 2)])
    );
}

#[tokio::test]
async fn service_that_matches_nothing_says_why_in_an_event() {
    let fleet = Fleet::start([zoned("h1", "us-east-1a"), zoned("h2", "us-east-1b")]).await;
    let td = fleet.task_definition("web", app(0, 128)).await;
    fleet
        .ecs
        .create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition(&td)
        .desired_count(2)
        .placement_constraints(member_of("attribute:stack == prod"))
        .send()
        .await
        .unwrap();
    let message = eventually(5, "an unable-to-place event", || async {
        let s = fleet.service("web").await;
        events(&s)
            .into_iter()
            .find(|e| e.contains("was unable to place a task"))
    })
    .await;
    assert!(message.starts_with("(service web) was unable to place a task because no container instance met all of its requirements."), "{message}");
    assert!(
        message.contains("memberOf placement constraint (attribute:stack == prod)"),
        "{message}"
    );
    let s = fleet.service("web").await;
    assert_eq!((s.running_count(), s.pending_count()), (0, 0));
    assert!(fleet.service_tasks("web").await.is_empty());
}

#[tokio::test]
async fn service_scales_out_and_in() {
    let fleet = Fleet::start([
        zoned("a1", "us-east-1a"),
        zoned("a2", "us-east-1a"),
        zoned("b1", "us-east-1b"),
        zoned("b2", "us-east-1b"),
    ])
    .await;
    let td = fleet.task_definition("web", app(0, 128)).await;
    fleet
        .ecs
        .create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition(&td)
        .desired_count(2)
        .send()
        .await
        .unwrap();
    fleet.wait_stable("web", 2).await;

    fleet
        .ecs
        .update_service()
        .cluster(CLUSTER)
        .service("web")
        .desired_count(8)
        .send()
        .await
        .unwrap();
    fleet.wait_stable("web", 8).await;
    let tasks = fleet.service_tasks("web").await;
    // The default service strategy: by zone, then by instance.
    assert_eq!(
        tally(&fleet.landed(&tasks, ZONE).await),
        counts([("us-east-1a", 4), ("us-east-1b", 4)])
    );
    assert_eq!(
        tally(&fleet.landed(&tasks, NAME).await),
        counts([("a1", 2), ("a2", 2), ("b1", 2), ("b2", 2)])
    );

    fleet
        .ecs
        .update_service()
        .cluster(CLUSTER)
        .service("web")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    let s = fleet.wait_stable("web", 3).await;
    assert!(
        events(&s).iter().any(|e| e.contains("has stopped")),
        "{:#?}",
        events(&s)
    );
    let left = fleet.service_tasks("web").await;
    assert_eq!(left.len(), 3);
    fleet.wait_running(&left).await;
}

/// ECS semantics: on scale-in a REPLICA service removes tasks from the zone
/// with the most of them, then from the instance with the most, so zones
/// stay balanced on the way down as on the way up.
#[tokio::test]
async fn replica_scale_in_removes_from_the_most_loaded_zone_first() {
    let mut fleet = Fleet::start([zoned("a1", "us-east-1a"), zoned("b1", "us-east-1b")]).await;
    let td = fleet.task_definition("web", app(0, 128)).await;
    fleet
        .ecs
        .create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition(&td)
        .desired_count(4)
        .send()
        .await
        .unwrap();
    fleet.wait_stable("web", 4).await;

    // A third zone appears; scaling out fills it, so the newest tasks are all in c.
    fleet.add(zoned("c1", "us-east-1c")).await;
    fleet
        .ecs
        .update_service()
        .cluster(CLUSTER)
        .service("web")
        .desired_count(6)
        .send()
        .await
        .unwrap();
    fleet.wait_stable("web", 6).await;
    let tasks = fleet.service_tasks("web").await;
    assert_eq!(
        tally(&fleet.landed(&tasks, ZONE).await),
        counts([("us-east-1a", 2), ("us-east-1b", 2), ("us-east-1c", 2)])
    );

    fleet
        .ecs
        .update_service()
        .cluster(CLUSTER)
        .service("web")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    fleet.wait_stable("web", 3).await;
    let tasks = fleet.service_tasks("web").await;
    assert_eq!(
        tally(&fleet.landed(&tasks, ZONE).await),
        counts([("us-east-1a", 1), ("us-east-1b", 1), ("us-east-1c", 1)])
    );
}

// ------------------------------------------------------------- invalid input

/// A fleet of one host with task definition `web`, and a raw signed client.
async fn raw_fleet() -> (Fleet, flotilla_client::Client) {
    let fleet = Fleet::start([host("h1", 4096, 8192)]).await;
    fleet.task_definition("web", app(0, 128)).await;
    let raw = fleet.server.raw(&ALICE);
    (fleet, raw)
}

/// Sends `op` with `body` and expects error `code`; returns the message.
async fn rejected(c: &flotilla_client::Client, op: &str, body: Value, code: &str) -> String {
    let r = send_json(c, op, &body).await;
    assert_error(&r, 400, code)
}

/// `base` with the members of `extra` added.
fn with(mut base: Value, extra: &Value) -> Value {
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

/// A RunTask body for `web` with `extra` members.
fn run(extra: Value) -> Value {
    with(json!({"cluster": CLUSTER, "taskDefinition": "web"}), &extra)
}

/// A CreateService body for a service `name` of `web` with `extra` members.
fn create(name: &str, extra: &Value) -> Value {
    with(
        json!({"cluster": CLUSTER, "serviceName": name, "taskDefinition": "web", "desiredCount": 1}),
        extra,
    )
}

async fn no_tasks(fleet: &Fleet) {
    let l = fleet
        .ecs
        .list_tasks()
        .cluster(CLUSTER)
        .send()
        .await
        .unwrap();
    assert!(
        l.task_arns().is_empty(),
        "a rejected request placed tasks: {:?}",
        l.task_arns()
    );
}

#[tokio::test]
async fn malformed_member_of_expressions_are_rejected_naming_the_position() {
    let (fleet, c) = raw_fleet().await;
    let cases = [
        ("attribute:stack ==", "placementConstraints[0]: expression: expected a value after '==', found end of expression at position 19"),
        ("attribute:stack == prod and", "at position"),
        ("(attribute:stack == prod", "expected ')' to close the '(' at position 1"),
        ("attribute:stack in [a, b", "at position"),
        ("runningTasksCount > ten", "at position"),
    ];
    for (expression, wanted) in cases {
        let body =
            run(json!({"placementConstraints": [{"type": "memberOf", "expression": expression}]}));
        let message = rejected(&c, "RunTask", body, "InvalidParameterException").await;
        assert!(message.contains(wanted), "{expression}: {message}");
        assert!(
            message.starts_with("placementConstraints[0]"),
            "{expression}: {message}"
        );
    }
    // The index is the constraint's.
    let body = run(
        json!({"placementConstraints": [{"type": "distinctInstance"}, {"type": "memberOf", "expression": "attribute:x =="}]}),
    );
    let message = rejected(&c, "RunTask", body, "InvalidParameterException").await;
    assert!(
        message.starts_with("placementConstraints[1]: expression:"),
        "{message}"
    );
    // Type and expression must agree.
    let body = run(json!({"placementConstraints": [{"type": "memberOf"}]}));
    let message = rejected(&c, "RunTask", body, "InvalidParameterException").await;
    assert_eq!(
        message,
        "placementConstraints[0]: memberOf requires an expression"
    );
    let body = run(
        json!({"placementConstraints": [{"type": "distinctInstance", "expression": "attribute:x exists"}]}),
    );
    let message = rejected(&c, "RunTask", body, "InvalidParameterException").await;
    assert_eq!(
        message,
        "placementConstraints[0]: distinctInstance does not take an expression"
    );
    no_tasks(&fleet).await;
}

#[tokio::test]
async fn more_than_ten_constraints_or_five_strategies_are_rejected() {
    let (fleet, c) = raw_fleet().await;
    let eleven: Vec<Value> = (0..11)
        .map(|_| json!({"type": "distinctInstance"}))
        .collect();
    let six: Vec<Value> = (0..6).map(|_| json!({"type": "random"})).collect();
    for (op, body) in [
        ("RunTask", run(json!({"placementConstraints": eleven}))),
        (
            "CreateService",
            create("web", &json!({"placementConstraints": eleven})),
        ),
    ] {
        let message = rejected(&c, op, body, "InvalidParameterException").await;
        assert!(message.contains("at most 10"), "{op}: {message}");
    }
    for (op, body) in [
        ("RunTask", run(json!({"placementStrategy": six}))),
        (
            "CreateService",
            create("web", &json!({"placementStrategy": six})),
        ),
    ] {
        let message = rejected(&c, op, body, "InvalidParameterException").await;
        assert!(message.contains("at most 5"), "{op}: {message}");
    }
    // Ten and five are fine.
    let ten = &eleven[..10];
    let five = &six[..5];
    let out = send_json(
        &c,
        "RunTask",
        &run(json!({"placementConstraints": ten, "placementStrategy": five})),
    )
    .await;
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));

    // The task definition's constraints count with the request's.
    let td_constraints: Vec<Value> = (0..6)
        .map(|i| json!({"type": "memberOf", "expression": format!("attribute:k{i} !exists")}))
        .collect();
    let reg = json!({"family": "pinned", "containerDefinitions": [{"name": "app", "image": "x", "memory": 64}], "placementConstraints": td_constraints});
    support::ok(&c, "RegisterTaskDefinition", &reg).await;
    let body = json!({"cluster": CLUSTER, "taskDefinition": "pinned", "placementConstraints": &eleven[..5]});
    let message = rejected(&c, "RunTask", body, "InvalidParameterException").await;
    assert_eq!(message, "at most 10 placement constraints are allowed (task definition and request together), got 11");
    let services = fleet
        .ecs
        .list_services()
        .cluster(CLUSTER)
        .send()
        .await
        .unwrap();
    assert!(services.service_arns().is_empty());
}

#[tokio::test]
async fn unknown_strategy_or_constraint_types_and_fields_are_clear_errors() {
    let (fleet, c) = raw_fleet().await;
    // Not a type the model knows: the decoder names the field.
    for (body, field) in [
        (
            run(json!({"placementStrategy": [{"type": "pack", "field": "memory"}]})),
            "placementStrategy[0].type",
        ),
        (
            run(json!({"placementConstraints": [{"type": "sameZone"}]})),
            "placementConstraints[0].type",
        ),
    ] {
        let message = rejected(&c, "RunTask", body, "SerializationException").await;
        assert!(message.contains(field), "{message}");
    }
    // A known type with a field it does not take: what is wrong and what is allowed.
    let cases = [
        (json!({"type": "binpack", "field": "disk"}), "placementStrategy[0]: binpack field must be cpu or memory, got 'disk'"),
        (json!({"type": "binpack"}), "placementStrategy[0]: binpack field must be cpu or memory, got no field"),
        (
            json!({"type": "spread", "field": "zone"}),
            "placementStrategy[0]: spread field must be instanceId, host or attribute:<name>, got 'zone'",
        ),
        (
            json!({"type": "spread", "field": "attribute:"}),
            "placementStrategy[0]: spread field must be instanceId, host or attribute:<name>, got 'attribute:'",
        ),
    ];
    for (strategy, wanted) in cases {
        let message = rejected(
            &c,
            "RunTask",
            run(json!({"placementStrategy": [strategy]})),
            "InvalidParameterException",
        )
        .await;
        assert_eq!(message, wanted);
    }
    no_tasks(&fleet).await;
}

/// CreateService and UpdateService take the same placement fields as RunTask
/// and, as in ECS, must refuse the same invalid ones up front rather than
/// accept a service that can never place a task. A refused request stores
/// nothing.
#[tokio::test]
async fn services_reject_invalid_placement_up_front() {
    let (fleet, c) = raw_fleet().await;
    let bad = [
        (
            json!({"placementConstraints": [{"type": "memberOf", "expression": "attribute:stack =="}]}),
            "placementConstraints[0]: expression: expected a value after '==', found end of expression at position 19",
        ),
        (
            json!({"placementStrategy": [{"type": "binpack", "field": "disk"}]}),
            "placementStrategy[0]: binpack field must be cpu or memory, got 'disk'",
        ),
    ];
    for (i, (extra, wanted)) in bad.iter().enumerate() {
        let message = rejected(
            &c,
            "CreateService",
            create(&format!("web{i}"), extra),
            "InvalidParameterException",
        )
        .await;
        assert_eq!(message, *wanted);
    }

    // The task definition's constraints count towards the 10, as in RunTask.
    let td_constraints: Vec<Value> = (0..6)
        .map(|i| json!({"type": "memberOf", "expression": format!("attribute:k{i} !exists")}))
        .collect();
    let reg = json!({"family": "pinned", "containerDefinitions": [{"name": "app", "image": "x", "memory": 64}], "placementConstraints": td_constraints});
    support::ok(&c, "RegisterTaskDefinition", &reg).await;
    let five: Vec<Value> = (0..5)
        .map(|_| json!({"type": "distinctInstance"}))
        .collect();
    let too_many = "at most 10 placement constraints are allowed (task definition and request together), got 11";
    let body = with(
        create("pinned", &json!({"placementConstraints": five})),
        &json!({"taskDefinition": "pinned"}),
    );
    assert_eq!(
        rejected(&c, "CreateService", body, "InvalidParameterException").await,
        too_many
    );

    support::ok(
        &c,
        "CreateService",
        &create("ok", &json!({"placementConstraints": five})),
    )
    .await;
    let before = fleet.service("ok").await;
    let update = |extra: &Value| with(json!({"cluster": CLUSTER, "service": "ok"}), extra);
    for (extra, wanted) in &bad {
        assert_eq!(
            rejected(
                &c,
                "UpdateService",
                update(extra),
                "InvalidParameterException"
            )
            .await,
            *wanted
        );
        // Alongside a valid change, the whole update is refused.
        let extra = with(extra.clone(), &json!({"desiredCount": 3}));
        assert_eq!(
            rejected(
                &c,
                "UpdateService",
                update(&extra),
                "InvalidParameterException"
            )
            .await,
            *wanted
        );
    }
    // The effective placement is checked: the service's 5 constraints and the
    // new task definition's 6 are 11.
    let message = rejected(
        &c,
        "UpdateService",
        update(&json!({"taskDefinition": "pinned"})),
        "InvalidParameterException",
    )
    .await;
    assert_eq!(message, too_many);
    let after = fleet.service("ok").await;
    assert_eq!(after.task_definition(), before.task_definition());
    assert_eq!(after.desired_count(), 1);
    assert_eq!(
        after.placement_constraints(),
        before.placement_constraints()
    );
    assert!(after.placement_strategy().is_empty());
    assert_eq!(
        after.deployments().len(),
        1,
        "a refused update started a deployment"
    );
    assert_eq!(after.deployments()[0].id(), before.deployments()[0].id());
    // Once the constraints are cleared, the same task definition is fine.
    support::ok(
        &c,
        "UpdateService",
        &update(&json!({"taskDefinition": "pinned", "placementConstraints": []})),
    )
    .await;

    // A DAEMON service takes constraints but no strategy, on create or update.
    let daemon = |name: &str, extra: &Value| {
        with(
            json!({"cluster": CLUSTER, "serviceName": name, "taskDefinition": "web", "schedulingStrategy": "DAEMON"}),
            extra,
        )
    };
    let spread = json!({"placementStrategy": [{"type": "spread", "field": "instanceId"}]});
    let message = rejected(
        &c,
        "CreateService",
        daemon("d0", &spread),
        "InvalidParameterException",
    )
    .await;
    assert_eq!(
        message,
        "placementStrategy cannot be specified for a DAEMON service."
    );
    let message = rejected(
        &c,
        "CreateService",
        daemon("d1", &bad[0].0),
        "InvalidParameterException",
    )
    .await;
    assert_eq!(message, bad[0].1);
    support::ok(&c, "CreateService", &daemon("d", &json!({}))).await;
    let body = with(json!({"cluster": CLUSTER, "service": "d"}), &spread);
    let message = rejected(&c, "UpdateService", body, "InvalidParameterException").await;
    assert_eq!(
        message,
        "placementStrategy cannot be specified for a DAEMON service."
    );
    let body = with(json!({"cluster": CLUSTER, "service": "d"}), &bad[0].0);
    assert_eq!(
        rejected(&c, "UpdateService", body, "InvalidParameterException").await,
        bad[0].1
    );
    assert!(fleet.service("d").await.placement_strategy().is_empty());
    assert!(fleet.service("d").await.placement_constraints().is_empty());

    let services = fleet
        .ecs
        .list_services()
        .cluster(CLUSTER)
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = services
        .service_arns()
        .iter()
        .map(|a| a.rsplit('/').next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "ok"]);
}
