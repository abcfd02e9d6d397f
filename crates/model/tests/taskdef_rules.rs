//! One test (or a few) per RegisterTaskDefinition rule: the rule, the field,
//! the AWS error code and the message a user reads.

use flotilla_model::ecs;
use flotilla_model::task_definition::{self as td, ErrorCode, Rule, TaskDefinitionError};
use serde_json::{json, Value};

/// A valid EC2 definition to break one rule at a time.
fn base() -> Value {
    json!({
        "family": "web",
        "containerDefinitions": [
            {"name": "app", "image": "nginx:1.27", "memory": 256}
        ]
    })
}

/// A valid Fargate definition.
fn fargate() -> Value {
    json!({
        "family": "web",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "containerDefinitions": [
            {"name": "app", "image": "nginx:1.27", "portMappings": [{"containerPort": 80}]}
        ]
    })
}

fn req(v: &Value) -> ecs::RegisterTaskDefinitionRequest {
    serde_json::from_value(v.clone()).expect("test request decodes")
}

fn ok(v: &Value) {
    if let Err(e) = td::validate_register(&req(v)) {
        panic!(
            "expected valid, got [{:?} at {}] {}",
            e.rule, e.field, e.message
        );
    }
}

fn err(v: &Value) -> TaskDefinitionError {
    td::validate_register(&req(v)).expect_err("expected a rejection")
}

/// Asserts rule, field, ClientException and a message fragment.
fn rejects(v: &Value, rule: Rule, field: &str, message: &str) {
    let e = err(v);
    assert_eq!(
        (e.rule, e.field.as_str()),
        (rule, field),
        "message: {}",
        e.message
    );
    assert_eq!(e.code, ErrorCode::ClientException, "{}", e.message);
    assert!(
        e.message.contains(message),
        "message {:?} should contain {message:?}",
        e.message
    );
}

fn c0(v: &mut Value) -> &mut Value {
    &mut v["containerDefinitions"][0]
}

fn add_container(v: &mut Value, c: Value) {
    v["containerDefinitions"].as_array_mut().unwrap().push(c);
}

#[test]
fn base_requests_are_valid() {
    ok(&base());
    ok(&fargate());
}

// --- family -----------------------------------------------------------------

#[test]
fn family_is_required() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("family");
    rejects(&v, Rule::Family, "family", "Family can not be blank.");
    v["family"] = "".into();
    rejects(&v, Rule::Family, "family", "Family can not be blank.");
}

#[test]
fn family_charset_and_length() {
    let mut v = base();
    for bad in ["web app", "web.app", "web:1", "{{ env }}", "wéb"] {
        v["family"] = bad.into();
        rejects(
            &v,
            Rule::Family,
            "family",
            "Family contains invalid characters.",
        );
    }
    v["family"] = "a".repeat(256).into();
    rejects(&v, Rule::Family, "family", "up to 255");
    v["family"] = format!("A-z_9{}", "x".repeat(250)).into();
    ok(&v);
}

// --- container list, names, images -----------------------------------------

#[test]
fn containers_one_to_ten() {
    let mut v = base();
    v["containerDefinitions"] = json!([]);
    rejects(
        &v,
        Rule::ContainerCount,
        "containerDefinitions",
        "Container list cannot be empty",
    );
    v.as_object_mut().unwrap().remove("containerDefinitions");
    rejects(
        &v,
        Rule::ContainerCount,
        "containerDefinitions",
        "Container list cannot be empty",
    );
    let mut v = base();
    for i in 1..=10 {
        add_container(
            &mut v,
            json!({"name": format!("c{i}"), "image": "busybox", "memory": 16}),
        );
    }
    rejects(
        &v,
        Rule::ContainerCount,
        "containerDefinitions",
        "at most 10 containers",
    );
}

#[test]
fn model_shape_rules_answer_invalid_parameter() {
    let mut v = base();
    c0(&mut v)["ulimits"] = json!([{"name": "nofile", "softLimit": 1024}]);
    let e = err(&v);
    assert_eq!(e.rule, Rule::Shape);
    assert_eq!(e.code, ErrorCode::InvalidParameterException);
    assert_eq!(e.field, "containerDefinitions[0].ulimits[0].hardLimit");
    assert!(
        e.message
            .contains("containerDefinitions[0].ulimits[0].hardLimit is required"),
        "{}",
        e.message
    );
}

#[test]
fn container_name_required_and_charset() {
    let mut v = base();
    c0(&mut v).as_object_mut().unwrap().remove("name");
    rejects(
        &v,
        Rule::ContainerName,
        "containerDefinitions[0].name",
        "Container.name should not be null or empty",
    );
    c0(&mut v)["name"] = "my app".into();
    rejects(
        &v,
        Rule::ContainerName,
        "containerDefinitions[0].name",
        "Container.name contains invalid characters",
    );
}

#[test]
fn container_names_unique() {
    let mut v = base();
    add_container(
        &mut v,
        json!({"name": "app", "image": "busybox", "memory": 16}),
    );
    rejects(
        &v,
        Rule::DuplicateContainerName,
        "containerDefinitions[1].name",
        "Container names must be unique within a Task Definition",
    );
}

#[test]
fn container_image_required() {
    let mut v = base();
    c0(&mut v)["image"] = " ".into();
    rejects(
        &v,
        Rule::ContainerImage,
        "containerDefinitions[0].image",
        "Container.image should not be null or empty",
    );
}

// --- essential, dependsOn ---------------------------------------------------

#[test]
fn at_least_one_essential_container() {
    let mut v = base();
    c0(&mut v)["essential"] = false.into();
    rejects(
        &v,
        Rule::EssentialContainer,
        "containerDefinitions",
        "does not have any essential container",
    );
    // Absent means essential.
    add_container(
        &mut v,
        json!({"name": "side", "image": "busybox", "memory": 16}),
    );
    ok(&v);
}

fn two_containers() -> Value {
    let mut v = base();
    add_container(
        &mut v,
        json!({"name": "init", "image": "busybox", "memory": 16, "essential": false}),
    );
    v
}

#[test]
fn depends_on_names_an_existing_other_container() {
    let mut v = two_containers();
    c0(&mut v)["dependsOn"] = json!([{"containerName": "db", "condition": "START"}]);
    rejects(
        &v,
        Rule::DependsOn,
        "containerDefinitions[0].dependsOn[0].containerName",
        "depends on container 'db'",
    );
    c0(&mut v)["dependsOn"] = json!([{"containerName": "app", "condition": "START"}]);
    rejects(
        &v,
        Rule::DependsOn,
        "containerDefinitions[0].dependsOn[0].containerName",
        "cannot depend on itself",
    );
    c0(&mut v)["dependsOn"] = json!([{"containerName": "init", "condition": "SUCCESS"}]);
    ok(&v);
}

#[test]
fn complete_and_success_may_not_target_an_essential_container() {
    let mut v = two_containers();
    v["containerDefinitions"][1]["essential"] = true.into();
    for condition in ["COMPLETE", "SUCCESS"] {
        c0(&mut v)["dependsOn"] = json!([{"containerName": "init", "condition": condition}]);
        rejects(
            &v,
            Rule::DependsOn,
            "containerDefinitions[0].dependsOn[0].condition",
            "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
        );
    }
    c0(&mut v)["dependsOn"] = json!([{"containerName": "init", "condition": "START"}]);
    ok(&v);
}

#[test]
fn healthy_needs_a_health_check_on_the_target() {
    let mut v = two_containers();
    c0(&mut v)["dependsOn"] = json!([{"containerName": "init", "condition": "HEALTHY"}]);
    rejects(
        &v,
        Rule::DependsOn,
        "containerDefinitions[0].dependsOn[0].condition",
        "must have a health check",
    );
    v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["CMD", "true"]});
    ok(&v);
}

#[test]
fn depends_on_cycles_are_rejected() {
    let mut v = two_containers();
    add_container(
        &mut v,
        json!({"name": "c", "image": "busybox", "memory": 16}),
    );
    c0(&mut v)["dependsOn"] = json!([{"containerName": "init", "condition": "START"}]);
    v["containerDefinitions"][1]["dependsOn"] =
        json!([{"containerName": "c", "condition": "START"}]);
    v["containerDefinitions"][2]["dependsOn"] =
        json!([{"containerName": "app", "condition": "START"}]);
    rejects(
        &v,
        Rule::DependsOn,
        "containerDefinitions[0].dependsOn",
        "'app' -> 'init' -> 'c' -> 'app'",
    );
}

#[test]
fn depends_on_members_are_required_by_the_model() {
    let mut v = two_containers();
    c0(&mut v)["dependsOn"] = json!([{"containerName": "init"}]);
    let e = err(&v);
    assert_eq!(
        (e.rule, e.code),
        (Rule::Shape, ErrorCode::InvalidParameterException)
    );
    assert_eq!(e.field, "containerDefinitions[0].dependsOn[0].condition");
}

// --- links, volumesFrom, volumes, mount points -----------------------------

#[test]
fn links_only_in_bridge_mode() {
    let mut v = two_containers();
    c0(&mut v)["links"] = json!(["init:setup"]);
    ok(&v);
    v["networkMode"] = "bridge".into();
    ok(&v);
    for mode in ["awsvpc", "host", "none"] {
        v["networkMode"] = mode.into();
        rejects(
            &v,
            Rule::Link,
            "containerDefinitions[0].links",
            &format!("Links are not supported when networkMode={mode}"),
        );
    }
}

#[test]
fn links_name_existing_containers_without_cycles() {
    let mut v = two_containers();
    c0(&mut v)["links"] = json!(["db:database"]);
    rejects(
        &v,
        Rule::Link,
        "containerDefinitions[0].links[0]",
        "links to container 'db'",
    );
    c0(&mut v)["links"] = json!(["app"]);
    rejects(
        &v,
        Rule::Link,
        "containerDefinitions[0].links[0]",
        "cannot link to itself",
    );
    c0(&mut v)["links"] = json!(["init"]);
    v["containerDefinitions"][1]["links"] = json!(["app"]);
    rejects(
        &v,
        Rule::Link,
        "containerDefinitions[0].links",
        "Container links should not have a cycle",
    );
}

#[test]
fn volumes_from_names_another_container() {
    let mut v = two_containers();
    c0(&mut v)["volumesFrom"] = json!([{"sourceContainer": "data"}]);
    rejects(
        &v,
        Rule::VolumesFrom,
        "containerDefinitions[0].volumesFrom[0].sourceContainer",
        "container 'data'",
    );
    c0(&mut v)["volumesFrom"] = json!([{"sourceContainer": "init", "readOnly": true}]);
    ok(&v);
}

#[test]
fn mount_points_name_a_volume() {
    let mut v = base();
    c0(&mut v)["mountPoints"] = json!([{"sourceVolume": "data", "containerPath": "/data"}]);
    rejects(
        &v,
        Rule::MountPoint,
        "containerDefinitions[0].mountPoints[0].sourceVolume",
        "Unknown volume 'data'.",
    );
    v["volumes"] = json!([{"name": "data", "host": {"sourcePath": "/srv/data"}}]);
    ok(&v);
    c0(&mut v)["mountPoints"] = json!([{"sourceVolume": "data"}]);
    rejects(
        &v,
        Rule::MountPoint,
        "containerDefinitions[0].mountPoints[0].containerPath",
        "needs a containerPath",
    );
}

#[test]
fn volume_names_unique_and_valid() {
    let mut v = base();
    v["volumes"] = json!([{"name": "data"}, {"name": "data", "host": {}}]);
    rejects(
        &v,
        Rule::Volume,
        "volumes[1].name",
        "Volume names must be unique",
    );
    v["volumes"] = json!([{"name": "my data"}]);
    rejects(&v, Rule::Volume, "volumes[0].name", "Invalid volume name");
}

// --- memory and cpu ---------------------------------------------------------

#[test]
fn ec2_containers_need_memory_unless_the_task_has_it() {
    let mut v = base();
    c0(&mut v).as_object_mut().unwrap().remove("memory");
    let message = "Invalid setting for container 'app'. At least one of 'memory' or 'memoryReservation' must be specified";
    rejects(
        &v,
        Rule::ContainerMemory,
        "containerDefinitions[0].memory",
        message,
    );
    for launch in [json!(["EC2"]), json!(["EXTERNAL"]), json!([])] {
        v["requiresCompatibilities"] = launch;
        rejects(
            &v,
            Rule::ContainerMemory,
            "containerDefinitions[0].memory",
            message,
        );
    }
    c0(&mut v)["memoryReservation"] = 128.into();
    ok(&v);
    c0(&mut v)
        .as_object_mut()
        .unwrap()
        .remove("memoryReservation");
    v["memory"] = "512".into();
    ok(&v);
    // Fargate has task memory anyway; container memory is optional there.
    ok(&fargate());
}

#[test]
fn memory_reservation_at_most_memory() {
    let mut v = base();
    c0(&mut v)["memoryReservation"] = 512.into();
    rejects(
        &v,
        Rule::ContainerMemory,
        "containerDefinitions[0].memoryReservation",
        "'memory' must be greater than or equal to 'memoryReservation'",
    );
    c0(&mut v)["memoryReservation"] = 256.into();
    ok(&v);
}

#[test]
fn container_memory_and_cpu_values() {
    let mut v = base();
    c0(&mut v)["memory"] = 0.into();
    rejects(
        &v,
        Rule::ContainerMemory,
        "containerDefinitions[0].memory",
        "Invalid 'memory' setting for container 'app'",
    );
    c0(&mut v)["memory"] = 256.into();
    c0(&mut v)["cpu"] = (-1).into();
    rejects(
        &v,
        Rule::ContainerCpu,
        "containerDefinitions[0].cpu",
        "Invalid 'cpu' setting for container 'app'",
    );
}

#[test]
fn containers_fit_the_task() {
    let mut v = fargate();
    c0(&mut v)["cpu"] = 200.into();
    add_container(
        &mut v,
        json!({"name": "side", "image": "busybox", "cpu": 57}),
    );
    rejects(
        &v,
        Rule::TaskResources,
        "containerDefinitions",
        "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'",
    );
    v["containerDefinitions"][1]["cpu"] = 56.into();
    ok(&v);
    v["containerDefinitions"][1]["memory"] = 513.into();
    rejects(
        &v,
        Rule::TaskResources,
        "containerDefinitions[1].memory",
        "The 'memory' setting for container 'side' is greater than for the task",
    );
    v["containerDefinitions"][1]["memory"] = 512.into();
    ok(&v);
}

#[test]
fn parse_task_cpu_accepts_units_and_vcpus() {
    for (s, n) in [
        ("1024", 1024),
        (" 256 ", 256),
        ("1 vCPU", 1024),
        ("1 vcpu", 1024),
        ("2vcpu", 2048),
        (".25 vcpu", 256),
        ("0.5 VCPU", 512),
        ("16 vCPU", 16384),
    ] {
        assert_eq!(td::parse_task_cpu(s), Ok(n), "{s}");
    }
    for s in [
        "",
        "0",
        "-256",
        "abc",
        "1.5",
        ".1 vcpu",
        "1 cpu",
        "1 vcpus",
        "1e3",
        "inf vcpu",
        ". vcpu",
        "99999999999",
    ] {
        let e = td::parse_task_cpu(s).expect_err(s);
        assert_eq!(
            (e.rule, e.field.as_str(), e.code),
            (Rule::TaskCpu, "cpu", ErrorCode::ClientException)
        );
        assert!(
            e.message.starts_with("Invalid 'cpu' setting for task"),
            "{}",
            e.message
        );
    }
}

#[test]
fn parse_task_memory_accepts_mib_and_gb() {
    for (s, n) in [
        ("2048", 2048),
        ("1GB", 1024),
        ("1 GB", 1024),
        ("0.5 GB", 512),
        (".5 gb", 512),
        ("30 gb", 30720),
    ] {
        assert_eq!(td::parse_task_memory(s), Ok(n), "{s}");
    }
    // MiB/MB/GiB units are not documented by ECS.
    for s in ["2048 MiB", "2048MB", "2 GiB", "0", "1.3 GB", "lots"] {
        let e = td::parse_task_memory(s).expect_err(s);
        assert_eq!((e.rule, e.field.as_str()), (Rule::TaskMemory, "memory"));
        assert!(
            e.message.starts_with("Invalid 'memory' setting for task"),
            "{}",
            e.message
        );
    }
}

#[test]
fn task_size_strings_are_validated() {
    let mut v = base();
    v["cpu"] = "lots".into();
    rejects(&v, Rule::TaskCpu, "cpu", "Invalid 'cpu' setting for task");
    v["cpu"] = "100".into();
    rejects(
        &v,
        Rule::TaskCpu,
        "cpu",
        "Supported values are between 128 and 196608 CPU units",
    );
    v["cpu"] = "0.125 vcpu".into();
    ok(&v);
    v["memory"] = "1 TB".into();
    rejects(
        &v,
        Rule::TaskMemory,
        "memory",
        "Invalid 'memory' setting for task",
    );
}

// --- Fargate ----------------------------------------------------------------

#[test]
fn fargate_needs_task_cpu_and_memory() {
    let mut v = fargate();
    v.as_object_mut().unwrap().remove("cpu");
    rejects(
        &v,
        Rule::LaunchType,
        "cpu",
        "Fargate requires that 'cpu' be defined at the task level.",
    );
    let mut v = fargate();
    v.as_object_mut().unwrap().remove("memory");
    rejects(
        &v,
        Rule::LaunchType,
        "memory",
        "Fargate requires that 'memory' be defined at the task level.",
    );
}

#[test]
fn fargate_needs_awsvpc() {
    let mut v = fargate();
    v.as_object_mut().unwrap().remove("networkMode");
    rejects(
        &v,
        Rule::LaunchType,
        "networkMode",
        "Fargate only supports network mode ‘awsvpc’",
    );
    v["networkMode"] = "host".into();
    rejects(
        &v,
        Rule::LaunchType,
        "networkMode",
        "Fargate only supports network mode ‘awsvpc’",
    );
}

#[test]
fn fargate_cpu_memory_combinations() {
    let valid = [
        (256, 512),
        (256, 2048),
        (512, 1024),
        (512, 4096),
        (1024, 2048),
        (1024, 8192),
        (2048, 4096),
        (2048, 16384),
        (4096, 8192),
        (4096, 30720),
        (8192, 16384),
        (8192, 61440),
        (16384, 32768),
        (16384, 122880),
    ];
    let invalid = [
        (256, 256),
        (256, 3072),
        (512, 512),
        (512, 1536),
        (1024, 9216),
        (2048, 17408),
        (4096, 31744),
        (8192, 18432),
        (8192, 65536),
        (16384, 36864),
        (128, 512),
        (3072, 8192),
    ];
    for (cpu, memory) in valid {
        let mut v = fargate();
        v["cpu"] = cpu.to_string().into();
        v["memory"] = memory.to_string().into();
        ok(&v);
    }
    for (cpu, memory) in invalid {
        let mut v = fargate();
        v["cpu"] = cpu.to_string().into();
        v["memory"] = memory.to_string().into();
        rejects(
            &v,
            Rule::LaunchType,
            "memory",
            &format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory."
            ),
        );
    }
    // Unit strings count by value.
    let mut v = fargate();
    v["cpu"] = ".5 vCPU".into();
    v["memory"] = "3 GB".into();
    ok(&v);
}

#[test]
fn fargate_host_port_must_equal_container_port() {
    let mut v = fargate();
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    rejects(
        &v,
        Rule::HostPortMismatch,
        "containerDefinitions[0].portMappings[0].hostPort",
        "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
    );
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80, "hostPort": 80}]);
    ok(&v);
}

#[test]
fn fargate_unsupported_parameters() {
    type Breaker = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Breaker, &str, &str)> = vec![
        (
            Box::new(|v| c0(v)["privileged"] = true.into()),
            "containerDefinitions[0].privileged",
            "privileged containers",
        ),
        (
            Box::new(|v| v["ipcMode"] = "task".into()),
            "ipcMode",
            "do not support ipcMode",
        ),
        (
            Box::new(|v| v["pidMode"] = "host".into()),
            "pidMode",
            "pidMode 'host'",
        ),
        (
            Box::new(|v| {
                v["placementConstraints"] =
                    json!([{"type": "memberOf", "expression": "attribute:a == b"}])
            }),
            "placementConstraints",
            "placement constraints",
        ),
        (
            Box::new(|v| v["volumes"] = json!([{"name": "d", "host": {"sourcePath": "/srv"}}])),
            "volumes[0].host.sourcePath",
            "host volumes with a sourcePath",
        ),
        (
            Box::new(|v| {
                v["volumes"] =
                    json!([{"name": "d", "dockerVolumeConfiguration": {"scope": "task"}}])
            }),
            "volumes[0].dockerVolumeConfiguration",
            "Docker volumes",
        ),
        (
            Box::new(|v| c0(v)["linuxParameters"] = json!({"sharedMemorySize": 64})),
            "containerDefinitions[0].linuxParameters.sharedMemorySize",
            "linuxParameters.sharedMemorySize",
        ),
        (
            Box::new(|v| {
                c0(v)["linuxParameters"] = json!({"capabilities": {"add": ["NET_ADMIN"]}})
            }),
            "containerDefinitions[0].linuxParameters.capabilities.add",
            "NET_ADMIN",
        ),
        (
            Box::new(|v| c0(v)["stopTimeout"] = 121.into()),
            "containerDefinitions[0].stopTimeout",
            "stopTimeout of 121",
        ),
        (
            Box::new(|v| c0(v)["logConfiguration"] = json!({"logDriver": "json-file"})),
            "containerDefinitions[0].logConfiguration.logDriver",
            "json-file log driver",
        ),
        (
            Box::new(|v| c0(v)["resourceRequirements"] = json!([{"type": "GPU", "value": "1"}])),
            "containerDefinitions[0].resourceRequirements",
            "GPU",
        ),
    ];
    for (break_it, field, message) in cases {
        let mut v = fargate();
        break_it(&mut v);
        rejects(&v, Rule::LaunchType, field, message);
        let e = err(&v);
        assert!(
            e.message
                .starts_with("Tasks using the Fargate launch type do not support"),
            "{}",
            e.message
        );
    }
    // What Fargate does support.
    let mut v = fargate();
    v["pidMode"] = "task".into();
    c0(&mut v)["linuxParameters"] =
        json!({"initProcessEnabled": true, "capabilities": {"add": ["SYS_PTRACE"]}});
    c0(&mut v)["stopTimeout"] = 120.into();
    v["volumes"] = json!([{"name": "scratch"}]);
    ok(&v);
}

#[test]
fn fargate_awslogs_and_ecr_need_an_execution_role() {
    let mut v = fargate();
    v.as_object_mut().unwrap().remove("executionRoleArn");
    c0(&mut v)["logConfiguration"] = json!({"logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "us-east-1"}});
    rejects(
        &v,
        Rule::LaunchType,
        "executionRoleArn",
        "execution role ARN to support log driver awslogs",
    );
    let mut v = fargate();
    v.as_object_mut().unwrap().remove("executionRoleArn");
    c0(&mut v)["image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1".into();
    rejects(
        &v,
        Rule::LaunchType,
        "executionRoleArn",
        "execution role ARN to support ECR images",
    );
}

#[test]
fn external_does_not_support_awsvpc() {
    let mut v = base();
    v["requiresCompatibilities"] = json!(["EXTERNAL"]);
    ok(&v);
    v["networkMode"] = "awsvpc".into();
    rejects(
        &v,
        Rule::LaunchType,
        "networkMode",
        "EXTERNAL launch type do not support networkMode 'awsvpc'",
    );
}

// --- network mode and ports -------------------------------------------------

#[test]
fn network_mode_values_come_from_the_model() {
    let mut v = base();
    v["networkMode"] = "nat".into();
    let e = serde_json::from_value::<ecs::RegisterTaskDefinitionRequest>(v.clone()).unwrap_err();
    assert!(e.to_string().contains("unknown variant `nat`"), "{e}");
    for mode in ["bridge", "host", "awsvpc", "none"] {
        v["networkMode"] = mode.into();
        ok(&v);
    }
}

#[test]
fn hostname_not_in_awsvpc() {
    let mut v = base();
    c0(&mut v)["hostname"] = "web".into();
    ok(&v);
    v["networkMode"] = "awsvpc".into();
    rejects(
        &v,
        Rule::NetworkMode,
        "containerDefinitions[0].hostname",
        "hostname is not supported on container when networkMode=awsvpc.",
    );
}

#[test]
fn no_port_mappings_in_none_mode() {
    let mut v = base();
    v["networkMode"] = "none".into();
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80}]);
    rejects(
        &v,
        Rule::NetworkMode,
        "containerDefinitions[0].portMappings",
        "networkMode=none",
    );
}

#[test]
fn container_port_or_range() {
    let mut v = base();
    for bad in [0, 65536, -1] {
        c0(&mut v)["portMappings"] = json!([{"containerPort": bad}]);
        rejects(
            &v,
            Rule::PortMapping,
            "containerDefinitions[0].portMappings[0].containerPort",
            "Invalid 'containerPort' setting for container 'app'",
        );
    }
    c0(&mut v)["portMappings"] = json!([{"protocol": "tcp"}]);
    rejects(
        &v,
        Rule::PortMapping,
        "containerDefinitions[0].portMappings[0].containerPort",
        "Invalid 'containerPort'",
    );
    c0(&mut v)["portMappings"] = json!([{"containerPortRange": "8000-8010"}]);
    ok(&v);
    for bad in ["8010-8000", "0-10", "8000", "a-b", "1-65536"] {
        c0(&mut v)["portMappings"] = json!([{"containerPortRange": bad}]);
        rejects(
            &v,
            Rule::PortMapping,
            "containerDefinitions[0].portMappings[0].containerPortRange",
            "Invalid 'containerPortRange'",
        );
    }
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80, "containerPortRange": "8000-8010"}]);
    rejects(
        &v,
        Rule::PortMapping,
        "containerDefinitions[0].portMappings[0].containerPortRange",
        "not both",
    );
    c0(&mut v)["portMappings"] = json!([{"containerPortRange": "8000-8010", "hostPort": 8000}]);
    rejects(
        &v,
        Rule::PortMapping,
        "containerDefinitions[0].portMappings[0].hostPort",
        "containerPortRange",
    );
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80, "hostPort": 70000}]);
    rejects(
        &v,
        Rule::PortMapping,
        "containerDefinitions[0].portMappings[0].hostPort",
        "must be 0-65535",
    );
}

#[test]
fn host_mode_host_port_equals_container_port() {
    let mut v = base();
    v["networkMode"] = "host".into();
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80, "hostPort": 81}]);
    rejects(
        &v,
        Rule::HostPortMismatch,
        "containerDefinitions[0].portMappings[0].hostPort",
        "When networkMode=host, the host ports and container ports in port mappings must match.",
    );
    for ok_mapping in [
        json!({"containerPort": 80}),
        json!({"containerPort": 80, "hostPort": 80}),
    ] {
        c0(&mut v)["portMappings"] = json!([ok_mapping]);
        ok(&v);
    }
    // Bridge maps freely.
    v["networkMode"] = "bridge".into();
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    ok(&v);
}

#[test]
fn no_duplicate_container_port_per_protocol_in_a_container() {
    let mut v = base();
    c0(&mut v)["portMappings"] =
        json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "tcp"}]);
    rejects(
        &v,
        Rule::PortConflict,
        "containerDefinitions[0].portMappings[1].containerPort",
        "maps container port 53/tcp twice",
    );
    c0(&mut v)["portMappings"] =
        json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "udp"}]);
    ok(&v);
}

#[test]
fn static_host_ports_once_per_protocol_in_the_task() {
    let mut v = two_containers();
    c0(&mut v)["portMappings"] = json!([{"containerPort": 80, "hostPort": 8080}]);
    v["containerDefinitions"][1]["portMappings"] = json!([{"containerPort": 81, "hostPort": 8080}]);
    rejects(
        &v,
        Rule::PortConflict,
        "containerDefinitions[1].portMappings[0].hostPort",
        "Host port 8080/tcp is bound twice",
    );
    // Another protocol, or dynamic ports, do not clash.
    v["containerDefinitions"][1]["portMappings"] =
        json!([{"containerPort": 81, "hostPort": 8080, "protocol": "udp"}]);
    ok(&v);
    c0(&mut v)["portMappings"] =
        json!([{"containerPort": 80, "hostPort": 0}, {"containerPort": 81}]);
    v["containerDefinitions"][1]["portMappings"] = json!([{"containerPort": 80, "hostPort": 0}]);
    ok(&v);
    // In awsvpc the container port is the host port.
    v["networkMode"] = "awsvpc".into();
    rejects(
        &v,
        Rule::PortConflict,
        "containerDefinitions[1].portMappings[0].hostPort",
        "Host port 80/tcp",
    );
}

// --- placement constraints, health checks, environment, logs ---------------

#[test]
fn placement_constraints_limits() {
    let mut v = base();
    let one = json!({"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t3.*"});
    v["placementConstraints"] = json!(vec![one.clone(); 10]);
    ok(&v);
    v["placementConstraints"] = json!(vec![one; 11]);
    rejects(
        &v,
        Rule::PlacementConstraint,
        "placementConstraints",
        "at most 10 placement constraints",
    );
    v["placementConstraints"] = json!([{"type": "memberOf", "expression": "a".repeat(2001)}]);
    rejects(
        &v,
        Rule::PlacementConstraint,
        "placementConstraints[0].expression",
        "at most 2000",
    );
    v["placementConstraints"] = json!([{"expression": "attribute:a == b"}]);
    rejects(
        &v,
        Rule::PlacementConstraint,
        "placementConstraints[0].type",
        "memberOf",
    );
    v["placementConstraints"] = json!([{"type": "memberOf"}]);
    rejects(
        &v,
        Rule::PlacementConstraint,
        "placementConstraints[0].expression",
        "needs an expression",
    );
    // distinctInstance is a RunTask/CreateService constraint, not a task definition one.
    v["placementConstraints"] = json!([{"type": "distinctInstance"}]);
    assert!(serde_json::from_value::<ecs::RegisterTaskDefinitionRequest>(v).is_err());
}

#[test]
fn health_check_limits() {
    let mut v = base();
    let cases = [
        ("interval", 4, "between 5 and 300"),
        ("interval", 301, "between 5 and 300"),
        ("timeout", 1, "between 2 and 120"),
        ("timeout", 121, "between 2 and 120"),
        ("retries", 0, "between 1 and 10"),
        ("retries", 11, "between 1 and 10"),
        ("startPeriod", -1, "between 0 and 300"),
        ("startPeriod", 301, "between 0 and 300"),
    ];
    for (field, value, message) in cases {
        c0(&mut v)["healthCheck"] = json!({"command": ["CMD", "true"], field: value});
        rejects(
            &v,
            Rule::HealthCheck,
            &format!("containerDefinitions[0].healthCheck.{field}"),
            message,
        );
    }
    c0(&mut v)["healthCheck"] = json!({"command": ["CMD-SHELL", "exit 0"], "interval": 5, "timeout": 120, "retries": 10, "startPeriod": 0});
    ok(&v);
}

#[test]
fn health_check_command_runs_something() {
    let mut v = base();
    for command in [
        json!([]),
        json!(["CMD"]),
        json!(["CMD-SHELL", " "]),
        json!([""]),
    ] {
        c0(&mut v)["healthCheck"] = json!({"command": command});
        rejects(
            &v,
            Rule::HealthCheck,
            "containerDefinitions[0].healthCheck.command",
            "must name a command to run",
        );
    }
    // Without a prefix the list is the command (exec form).
    c0(&mut v)["healthCheck"] = json!({"command": ["/healthcheck"]});
    ok(&v);
}

#[test]
fn environment_entries_have_name_and_value() {
    let mut v = base();
    c0(&mut v)["environment"] = json!([{"name": "A", "value": ""}, {"value": "x"}]);
    rejects(
        &v,
        Rule::Environment,
        "containerDefinitions[0].environment[1].name",
        "Environment variable name cannot be null or blank",
    );
    c0(&mut v)["environment"] =
        json!([{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/db"}]);
    rejects(
        &v,
        Rule::Environment,
        "containerDefinitions[0].environment[0].value",
        "list it under 'secrets' with 'valueFrom'",
    );
}

#[test]
fn awslogs_needs_group_and_region() {
    let mut v = base();
    c0(&mut v)["logConfiguration"] =
        json!({"logDriver": "awslogs", "options": {"awslogs-group": "g"}});
    rejects(
        &v,
        Rule::LogConfiguration,
        "containerDefinitions[0].logConfiguration.options",
        "Log driver awslogs requires options: awslogs-region, awslogs-group (container 'app' is missing awslogs-region)",
    );
    c0(&mut v)["logConfiguration"]["options"]["awslogs-region"] = "eu-west-1".into();
    ok(&v);
}

#[test]
fn pid_and_ipc_mode_values() {
    let mut v = base();
    for (key, good) in [
        ("pidMode", ["host", "task"].as_slice()),
        ("ipcMode", ["host", "task", "none"].as_slice()),
    ] {
        for value in good {
            v[key] = (*value).into();
            ok(&v);
        }
        v[key] = "container".into();
        assert!(
            serde_json::from_value::<ecs::RegisterTaskDefinitionRequest>(v.clone()).is_err(),
            "{key}"
        );
        v.as_object_mut().unwrap().remove(key);
    }
}

#[test]
fn ulimit_names_come_from_the_model() {
    let mut v = base();
    c0(&mut v)["ulimits"] = json!([{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]);
    ok(&v);
    c0(&mut v)["ulimits"] = json!([{"name": "files", "softLimit": 1024, "hardLimit": 4096}]);
    let e = serde_json::from_value::<ecs::RegisterTaskDefinitionRequest>(v).unwrap_err();
    assert!(e.to_string().contains("unknown variant `files`"), "{e}");
}

#[test]
fn ephemeral_storage_range() {
    let mut v = fargate();
    v["ephemeralStorage"] = json!({"sizeInGiB": 20});
    rejects(
        &v,
        Rule::EphemeralStorage,
        "ephemeralStorage.sizeInGiB",
        "between 21 and 200 GiB",
    );
    v["ephemeralStorage"] = json!({"sizeInGiB": 200});
    ok(&v);
}

#[test]
fn proxy_container_exists() {
    let mut v = fargate();
    v["proxyConfiguration"] = json!({"type": "APPMESH", "containerName": "envoy"});
    rejects(
        &v,
        Rule::ProxyConfiguration,
        "proxyConfiguration.containerName",
        "'envoy'",
    );
    v["proxyConfiguration"]["containerName"] = "app".into();
    ok(&v);
}

// --- tags -------------------------------------------------------------------

fn tags(n: usize) -> Value {
    json!((0..n)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect::<Vec<_>>())
}

#[test]
fn tags_limits_answer_invalid_parameter() {
    let mut v = base();
    v["tags"] = tags(50);
    ok(&v);
    v["tags"] = tags(51);
    let e = err(&v);
    assert_eq!(
        (e.rule, e.code, e.field.as_str()),
        (Rule::Shape, ErrorCode::InvalidParameterException, "tags")
    );
    v["tags"] = json!([{"key": "k".repeat(129), "value": ""}]);
    assert_eq!(err(&v).field, "tags[0].key");
    v["tags"] = json!([{"key": "", "value": ""}]);
    assert_eq!(err(&v).field, "tags[0].key");
    v["tags"] = json!([{"key": "k", "value": "v".repeat(257)}]);
    assert_eq!(err(&v).field, "tags[0].value");
    v["tags"] =
        json!([{"key": "k".repeat(128), "value": "v".repeat(256)}, {"key": "empty", "value": ""}]);
    ok(&v);
}

#[test]
fn tag_keys_unique_and_not_reserved() {
    let mut v = base();
    v["tags"] = json!([{"key": "team", "value": "a"}, {"key": "team", "value": "b"}]);
    let e = err(&v);
    assert_eq!(
        (e.rule, e.code, e.field.as_str()),
        (
            Rule::Tags,
            ErrorCode::InvalidParameterException,
            "tags[1].key"
        )
    );
    assert!(
        e.message.contains("Duplicate tag key \"team\""),
        "{}",
        e.message
    );
    for key in ["aws:cloudformation:stack-name", "AWS:x", "Aws:y"] {
        v["tags"] = json!([{"key": key, "value": "a"}]);
        let e = err(&v);
        assert_eq!((e.rule, e.field.as_str()), (Rule::Tags, "tags[0].key"));
        assert!(e.message.contains("reserved for AWS use"), "{}", e.message);
    }
    v["tags"] = json!([{"key": "awsome", "value": "a"}]);
    ok(&v);
}

// --- what ECS reports --------------------------------------------------------

fn attribute_names(v: &Value) -> Vec<String> {
    td::requires_attributes(&req(v))
        .into_iter()
        .map(|a| a.name.unwrap())
        .collect()
}

#[test]
fn requires_attributes_mapping() {
    assert_eq!(attribute_names(&base()), Vec::<String>::new());

    let mut v = fargate();
    v["taskRoleArn"] = "arn:aws:iam::123456789012:role/app".into();
    let c = c0(&mut v);
    c["image"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:1".into();
    c["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
        "awslogs-group": "g", "awslogs-region": "eu-west-1", "awslogs-create-group": "true", "mode": "non-blocking"}});
    c["healthCheck"] = json!({"command": ["CMD", "true"]});
    c["secrets"] = json!([
        {"name": "A", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a-AbCdEf"},
        {"name": "B", "valueFrom": "/app/b"}
    ]);
    c["dependsOn"] = json!([]);
    c["stopTimeout"] = 10.into();
    c["linuxParameters"] = json!({"initProcessEnabled": true});
    c["environmentFiles"] = json!([{"type": "s3", "value": "arn:aws:s3:::bucket/app.env"}]);
    v["ephemeralStorage"] = json!({"sizeInGiB": 30});
    let names = attribute_names(&v);
    let expected = [
        "com.amazonaws.ecs.capability.docker-remote-api.1.18",
        "com.amazonaws.ecs.capability.docker-remote-api.1.19",
        "com.amazonaws.ecs.capability.docker-remote-api.1.24",
        "com.amazonaws.ecs.capability.docker-remote-api.1.25",
        "com.amazonaws.ecs.capability.docker-remote-api.1.28",
        "com.amazonaws.ecs.capability.docker-remote-api.1.29",
        "com.amazonaws.ecs.capability.ecr-auth",
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "ecs.capability.env-files.s3",
        "ecs.capability.execution-role-awslogs",
        "ecs.capability.execution-role-ecr-pull",
        "ecs.capability.extensible-ephemeral-storage",
        "ecs.capability.secrets.asm.environment-variables",
        "ecs.capability.secrets.ssm.environment-variables",
        "ecs.capability.task-eni",
    ];
    assert_eq!(names, expected);
    for n in &names {
        assert!(
            td::KNOWN_REQUIRED_ATTRIBUTES.contains(&n.as_str()) || n.contains(".logging-driver."),
            "{n}"
        );
    }
}

#[test]
fn requires_attributes_for_volumes_firelens_and_host_features() {
    let mut v = base();
    v["networkMode"] = "host".into();
    v["taskRoleArn"] = "app-role".into();
    v["pidMode"] = "host".into();
    v["volumes"] = json!([
        {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "transitEncryption": "ENABLED",
            "authorizationConfig": {"iam": "ENABLED"}}},
        {"name": "docker", "dockerVolumeConfiguration": {"driver": "rexray/ebs", "scope": "shared"}}
    ]);
    let c = c0(&mut v);
    c["privileged"] = true.into();
    c["mountPoints"] = json!([{"sourceVolume": "efs", "containerPath": "/efs"}]);
    c["firelensConfiguration"] = json!({"type": "fluentbit", "options": {"config-file-type": "file", "config-file-value": "/x.conf"}});
    c["dockerLabels"] = json!({});
    c["repositoryCredentials"] =
        json!({"credentialsParameter": "arn:aws:secretsmanager:us-east-1:1:secret:x"});
    let names = attribute_names(&v);
    for expected in [
        "com.amazonaws.ecs.capability.docker-remote-api.1.17",
        "com.amazonaws.ecs.capability.docker-remote-api.1.18",
        "com.amazonaws.ecs.capability.privileged-container",
        "com.amazonaws.ecs.capability.task-iam-role",
        "com.amazonaws.ecs.capability.task-iam-role-network-host",
        "ecs.capability.docker-plugin.rexray/ebs",
        "ecs.capability.efs",
        "ecs.capability.efsAuth",
        "ecs.capability.firelens.fluentbit",
        "ecs.capability.firelens.options.config.file",
        "ecs.capability.pid-ipc-namespace-sharing",
        "ecs.capability.private-registry-authentication.secretsmanager",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing {expected} in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "ecs.capability.task-eni"));
}

#[test]
fn compatibilities_reported() {
    use ecs::Compatibility::*;
    // Bridge/default EC2: EXTERNAL and EC2, whatever was requested.
    assert_eq!(td::compatibilities(&req(&base())), vec![External, Ec2]);
    // Fargate-valid awsvpc: EC2 and FARGATE.
    assert_eq!(td::compatibilities(&req(&fargate())), vec![Ec2, Fargate]);
    let mut v = fargate();
    v.as_object_mut().unwrap().remove("requiresCompatibilities");
    assert_eq!(td::compatibilities(&req(&v)), vec![Ec2, Fargate]);
    // awsvpc without a valid Fargate size: EC2 only.
    v["memory"] = "300".into();
    assert_eq!(td::compatibilities(&req(&v)), vec![Ec2]);
    // Service Connect port names rule out EXTERNAL.
    let mut v = base();
    c0(&mut v)["portMappings"] =
        json!([{"name": "web-80-tcp", "containerPort": 80, "appProtocol": "http"}]);
    assert_eq!(td::compatibilities(&req(&v)), vec![Ec2]);
    // MANAGED_INSTANCES only when asked for.
    let mut v = fargate();
    v["requiresCompatibilities"] = json!(["FARGATE", "MANAGED_INSTANCES"]);
    ok(&v);
    assert_eq!(
        td::compatibilities(&req(&v)),
        vec![Ec2, ManagedInstances, Fargate]
    );
}

// --- the registered definition ---------------------------------------------

fn built(v: &Value) -> Value {
    let r = req(v);
    td::validate_register(&r).unwrap();
    let def = td::build_task_definition(
        &r,
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:3".into(),
        3,
        1.7e9,
        None,
    );
    serde_json::to_value(def).unwrap()
}

#[test]
fn build_fills_the_defaults_ecs_fills() {
    let mut v = fargate();
    c0(&mut v)["healthCheck"] = json!({"command": ["CMD", "true"], "retries": 5});
    v["tags"] = json!([{"key": "team", "value": "web"}]);
    let b = built(&v);
    let c = &b["containerDefinitions"][0];
    assert_eq!(c["essential"], true);
    assert_eq!(c["cpu"], 0);
    assert_eq!(
        c["portMappings"],
        json!([{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}])
    );
    assert_eq!(c["environment"], json!([]));
    assert_eq!(c["mountPoints"], json!([]));
    assert_eq!(c["volumesFrom"], json!([]));
    assert_eq!(
        c["healthCheck"],
        json!({"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 5})
    );
    assert_eq!(b["volumes"], json!([]));
    assert_eq!(b["placementConstraints"], json!([]));
    assert_eq!(b["status"], "ACTIVE");
    assert_eq!(b["revision"], 3);
    assert_eq!(
        b["taskDefinitionArn"],
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:3"
    );
    assert_eq!(b["registeredAt"], 1.7e9);
    assert!(b.get("registeredBy").is_none());
    assert!(
        b.get("tags").is_none(),
        "tags travel in the response, not in the TaskDefinition"
    );
}

#[test]
fn build_keeps_what_was_given() {
    let mut v = base();
    v["cpu"] = "1 vCPU".into();
    v["memory"] = "2 GB".into();
    let c = c0(&mut v);
    c["essential"] = true.into();
    c["cpu"] = 10.into();
    c["portMappings"] =
        json!([{"containerPort": 80, "protocol": "udp"}, {"containerPort": 81, "hostPort": 0}]);
    add_container(
        &mut v,
        json!({"name": "side", "image": "busybox", "memory": 16, "essential": false}),
    );
    let b = built(&v);
    assert_eq!(b["cpu"], "1 vCPU", "task size is kept as given");
    assert_eq!(b["memory"], "2 GB");
    assert!(b.get("networkMode").is_none());
    let c = &b["containerDefinitions"];
    assert_eq!(c[0]["cpu"], 10);
    // Bridge: no hostPort is invented; protocol defaults to tcp.
    assert_eq!(
        c[0]["portMappings"],
        json!([{"containerPort": 80, "protocol": "udp"}, {"containerPort": 81, "hostPort": 0, "protocol": "tcp"}])
    );
    assert_eq!(c[1]["essential"], false);
}

// --- AWS's own words ---------------------------------------------------------

/// Where AWS's message text is known, it is used verbatim (clients and
/// scripts match on it).
#[test]
fn known_aws_messages_are_verbatim() {
    let mut v = base();
    c0(&mut v).as_object_mut().unwrap().remove("name");
    assert_eq!(
        err(&v).message,
        "Container.name should not be null or empty."
    );
    let mut v = base();
    c0(&mut v)["image"] = "".into();
    assert_eq!(
        err(&v).message,
        "Container.image should not be null or empty."
    );
    let mut v = fargate();
    v["pidMode"] = "host".into();
    assert_eq!(
        err(&v).message,
        "Tasks using the Fargate launch type do not support pidMode 'host'. The supported value for pidMode is 'task'."
    );
}

/// An EFS volume comes back with `rootDirectory` `/` when none was given,
/// and with its own when one was.
#[test]
fn efs_root_directory_defaults_to_slash() {
    let mut v = base();
    v["volumes"] = json!([
        {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1234"}},
        {"name": "logs", "efsVolumeConfiguration": {"fileSystemId": "fs-1234", "rootDirectory": "/logs"}}
    ]);
    let b = built(&v);
    assert_eq!(
        b["volumes"][0]["efsVolumeConfiguration"]["rootDirectory"],
        "/"
    );
    assert_eq!(
        b["volumes"][1]["efsVolumeConfiguration"]["rootDirectory"],
        "/logs"
    );
}
