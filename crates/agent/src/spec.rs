//! From an ECS task definition to container engine specs: pure functions,
//! no I/O, so every mapping rule is unit-tested here.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_model::ecs;

use crate::runtime::{ContainerSpec, HealthSpec, PortSpec, Protocol, UlimitSpec, VolumeSpec};

/// Docker labels the agent puts on every container. The first five are the
/// ones the ECS agent sets (users' tooling reads them).
pub const LABEL_CLUSTER: &str = "com.amazonaws.ecs.cluster";
pub const LABEL_TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
pub const LABEL_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
pub const LABEL_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
pub const LABEL_REVISION: &str = "com.amazonaws.ecs.task-definition-version";
/// The container instance that owns the container: agents sharing one
/// Docker Engine each touch only the containers carrying their own ARN.
pub const LABEL_INSTANCE: &str = "com.flotilla.container-instance";
/// Marks a named volume that lives and dies with one task.
pub const LABEL_VOLUME_TASK: &str = "com.flotilla.task-arn";

/// Default `stopTimeout` when neither the container nor the agent sets one.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A task definition the agent cannot run, with the reason users will read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// What is the same for every container of one task.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub cluster: String,
    pub instance_arn: String,
    pub task_arn: String,
    pub family: String,
    pub revision: i32,
    pub network_mode: ecs::NetworkMode,
    /// Address host ports are bound on (`--host-ip`).
    pub host_ip: String,
    pub region: String,
    /// `http://ADDR:PORT/v4`, or `None` when the endpoint is off.
    pub metadata_base: Option<String>,
    /// Agent default for `stopTimeout` (ECS_CONTAINER_STOP_TIMEOUT).
    pub default_stop_timeout: Duration,
}

impl TaskContext {
    /// The last segment of the task ARN (its 32-hex id).
    pub fn task_id(&self) -> &str {
        self.task_arn.rsplit('/').next().unwrap_or(&self.task_arn)
    }

    /// The Docker name of a container of this task: readable in `docker ps`
    /// and unique per task, as the ECS agent's `ecs-FAMILY-REV-NAME-…`.
    pub fn docker_name(&self, container: &str) -> String {
        let raw = format!(
            "ecs-{}-{}-{}-{}",
            self.family,
            self.revision,
            container,
            self.task_id()
        );
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }

    pub fn labels(&self, container: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CLUSTER.to_string(), self.cluster.clone()),
            (LABEL_TASK_ARN.to_string(), self.task_arn.clone()),
            (LABEL_CONTAINER_NAME.to_string(), container.to_string()),
            (LABEL_FAMILY.to_string(), self.family.clone()),
            (LABEL_REVISION.to_string(), self.revision.to_string()),
            (LABEL_INSTANCE.to_string(), self.instance_arn.clone()),
        ])
    }
}

/// How one task-definition volume is provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A host path bind-mounted as is.
    HostPath(String),
    /// A named Docker volume; `task_scoped` ones are removed with the task;
    /// `create` is false for a shared volume without autoprovision (it must
    /// already exist).
    Named {
        spec: VolumeSpec,
        task_scoped: bool,
        create: bool,
    },
}

/// Resolves the task definition's volumes.
pub fn task_volumes(
    ctx: &TaskContext,
    volumes: &[ecs::Volume],
) -> Result<BTreeMap<String, VolumeSource>, SpecError> {
    let mut out = BTreeMap::new();
    for v in volumes {
        let name = v
            .name
            .clone()
            .ok_or_else(|| SpecError("volumes[].name is required".into()))?;
        if v.efs_volume_configuration.is_some()
            || v.fsx_windows_file_server_volume_configuration.is_some()
            || v.s3files_volume_configuration.is_some()
        {
            return Err(SpecError(format!(
                "volume {name}: only host and dockerVolumeConfiguration volumes are supported"
            )));
        }
        let task_scoped_volume =
            |driver: Option<String>, opts, labels: BTreeMap<String, String>| {
                let mut labels = labels;
                labels.insert(LABEL_VOLUME_TASK.into(), ctx.task_arn.clone());
                labels.insert(LABEL_INSTANCE.into(), ctx.instance_arn.clone());
                VolumeSource::Named {
                    spec: VolumeSpec {
                        name: format!(
                            "ecs-{}-{}-{}-{}",
                            ctx.family,
                            ctx.revision,
                            name,
                            ctx.task_id()
                        ),
                        driver,
                        driver_opts: opts,
                        labels,
                    },
                    task_scoped: true,
                    create: true,
                }
            };
        let source = if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.clone()) {
            VolumeSource::HostPath(path)
        } else if let Some(d) = &v.docker_volume_configuration {
            let opts = d.driver_opts.clone().unwrap_or_default();
            let labels = d.labels.clone().unwrap_or_default();
            if d.scope == Some(ecs::Scope::Shared) {
                VolumeSource::Named {
                    spec: VolumeSpec {
                        name: name.clone(),
                        driver: d.driver.clone(),
                        driver_opts: opts,
                        labels,
                    },
                    task_scoped: false,
                    create: d.autoprovision.unwrap_or(false),
                }
            } else {
                task_scoped_volume(d.driver.clone(), opts, labels)
            }
        } else {
            // No source path: ECS lets Docker pick a host path that lives as
            // long as the task; a task-scoped local volume is exactly that.
            task_scoped_volume(None, BTreeMap::new(), BTreeMap::new())
        };
        out.insert(name, source);
    }
    Ok(out)
}

/// The container definition with the task's containerOverrides applied.
pub fn apply_overrides(
    def: &ecs::ContainerDefinition,
    overrides: Option<&ecs::TaskOverride>,
) -> ecs::ContainerDefinition {
    let mut def = def.clone();
    let Some(o) = overrides
        .and_then(|o| o.container_overrides.as_ref())
        .and_then(|list| list.iter().find(|o| o.name.is_some() && o.name == def.name))
    else {
        return def;
    };
    if o.command.is_some() {
        def.command = o.command.clone();
    }
    if o.cpu.is_some() {
        def.cpu = o.cpu;
    }
    if o.memory.is_some() {
        def.memory = o.memory;
    }
    if o.memory_reservation.is_some() {
        def.memory_reservation = o.memory_reservation;
    }
    if let Some(extra) = &o.environment {
        let mut env = def.environment.take().unwrap_or_default();
        for kv in extra {
            env.retain(|e| e.name != kv.name);
            env.push(kv.clone());
        }
        def.environment = Some(env);
    }
    def
}

pub fn stop_timeout(ctx: &TaskContext, def: &ecs::ContainerDefinition) -> Duration {
    def.stop_timeout
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(ctx.default_stop_timeout)
}

const MIB: i64 = 1024 * 1024;

/// The create spec of one container.
///
/// `docker_names` maps the task's container names to their Docker names
/// (for links and volumesFrom); `token` is this container's metadata token.
pub fn container_spec(
    ctx: &TaskContext,
    def: &ecs::ContainerDefinition,
    volumes: &BTreeMap<String, VolumeSource>,
    docker_names: &BTreeMap<String, String>,
    token: &str,
) -> Result<ContainerSpec, SpecError> {
    let name = def
        .name
        .clone()
        .ok_or_else(|| SpecError("containerDefinitions[].name is required".into()))?;
    let image = def
        .image
        .clone()
        .ok_or_else(|| SpecError(format!("container {name}: image is required")))?;
    let network_mode = match ctx.network_mode {
        ecs::NetworkMode::Bridge => "bridge",
        ecs::NetworkMode::Host => "host",
        ecs::NetworkMode::None => "none",
        ecs::NetworkMode::Awsvpc => return Err(SpecError(
            "network mode awsvpc is not supported by the Flotilla agent; use bridge, host or none"
                .into(),
        )),
    };

    let mut env: Vec<String> = Vec::new();
    for kv in def.environment.iter().flatten() {
        if let Some(k) = &kv.name {
            env.push(format!("{k}={}", kv.value.as_deref().unwrap_or("")));
        }
    }
    let mut set_default = |k: &str, v: String| {
        if !env
            .iter()
            .any(|e| e.split_once('=').map(|(n, _)| n) == Some(k))
        {
            env.push(format!("{k}={v}"));
        }
    };
    if let Some(base) = &ctx.metadata_base {
        set_default("ECS_CONTAINER_METADATA_URI_V4", format!("{base}/{token}"));
    }
    set_default("AWS_REGION", ctx.region.clone());
    set_default("AWS_DEFAULT_REGION", ctx.region.clone());
    set_default("AWS_EXECUTION_ENV", "AWS_ECS_EC2".to_string());

    let mut labels: BTreeMap<String, String> = def.docker_labels.clone().unwrap_or_default();
    labels.extend(ctx.labels(&name));

    let mut ports = Vec::new();
    if network_mode == "bridge" {
        for (i, p) in def.port_mappings.iter().flatten().enumerate() {
            if p.container_port_range.is_some() {
                return Err(SpecError(format!(
                    "container {name}: portMappings[{i}].containerPortRange is not supported by the Flotilla agent"
                )));
            }
            let container_port = p
                .container_port
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| *c > 0)
                .ok_or_else(|| {
                    SpecError(format!(
                        "container {name}: portMappings[{i}].containerPort must be 1-65535"
                    ))
                })?;
            let host_port = match p.host_port {
                None | Some(0) => None,
                Some(h) => Some(u16::try_from(h).map_err(|_| {
                    SpecError(format!(
                        "container {name}: portMappings[{i}].hostPort must be 0-65535"
                    ))
                })?),
            };
            ports.push(PortSpec {
                container_port,
                protocol: protocol(p.protocol),
                host_ip: ctx.host_ip.clone(),
                host_port,
            });
        }
    }

    let health = match &def.health_check {
        Some(h) => {
            let test = h.command.clone().unwrap_or_default();
            if test.is_empty() {
                return Err(SpecError(format!(
                    "container {name}: healthCheck.command is required"
                )));
            }
            let secs = |v: Option<i32>, d: u64| {
                Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(d))
            };
            Some(HealthSpec {
                test,
                interval: secs(h.interval, 30),
                timeout: secs(h.timeout, 5),
                retries: h.retries.and_then(|r| u32::try_from(r).ok()).unwrap_or(3),
                start_period: secs(h.start_period, 0),
            })
        }
        None => None,
    };

    let mut binds = Vec::new();
    for (i, m) in def.mount_points.iter().flatten().enumerate() {
        let source = m.source_volume.as_deref().unwrap_or("");
        let target = m.container_path.as_deref().ok_or_else(|| {
            SpecError(format!(
                "container {name}: mountPoints[{i}].containerPath is required"
            ))
        })?;
        let src = match volumes.get(source) {
            Some(VolumeSource::HostPath(p)) => p.clone(),
            Some(VolumeSource::Named { spec, .. }) => spec.name.clone(),
            None => {
                return Err(SpecError(format!(
                    "container {name}: mountPoints[{i}].sourceVolume {source:?} is not a volume of the task definition"
                )))
            }
        };
        let ro = if m.read_only == Some(true) { ":ro" } else { "" };
        binds.push(format!("{src}:{target}{ro}"));
    }

    let lookup = |other: &str, what: &str| {
        docker_names.get(other).cloned().ok_or_else(|| {
            SpecError(format!(
                "container {name}: {what} names unknown container {other:?}"
            ))
        })
    };
    let mut volumes_from = Vec::new();
    for v in def.volumes_from.iter().flatten() {
        let src = lookup(v.source_container.as_deref().unwrap_or(""), "volumesFrom")?;
        volumes_from.push(if v.read_only == Some(true) {
            format!("{src}:ro")
        } else {
            src
        });
    }
    let mut links = Vec::new();
    if network_mode == "bridge" {
        for l in def.links.iter().flatten() {
            let (target, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            links.push(format!("{}:{alias}", lookup(target, "links")?));
        }
    } else if def.links.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(SpecError(format!(
            "container {name}: links are only supported in bridge network mode"
        )));
    }

    let ulimits = def
        .ulimits
        .iter()
        .flatten()
        .filter_map(|u| {
            Some(UlimitSpec {
                name: u.name?.as_str().to_string(),
                soft: i64::from(u.soft_limit?),
                hard: i64::from(u.hard_limit?),
            })
        })
        .collect();

    let linux = def.linux_parameters.clone().unwrap_or_default();
    let mut tmpfs = BTreeMap::new();
    for t in linux.tmpfs.iter().flatten() {
        if let Some(path) = &t.container_path {
            let mut opts: Vec<String> = t.mount_options.clone().unwrap_or_default();
            if let Some(size) = t.size {
                opts.push(format!("size={size}m"));
            }
            tmpfs.insert(path.clone(), opts.join(","));
        }
    }
    let log = def.log_configuration.as_ref().and_then(|l| {
        let driver = l.log_driver?.as_str();
        match driver {
            // The agent ships awslogs output itself (crate::logs), reading
            // it back from a local driver; its options are the agent's.
            "awslogs" => Some((
                crate::logs::LOCAL_DRIVER.to_string(),
                crate::logs::LOCAL_DRIVER_OPTIONS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )),
            // Drivers that need a service Flotilla does not have are left
            // to the engine's default driver (logs stay readable with
            // `docker logs`).
            "awsfirelens" | "splunk" => None,
            _ => Some((driver.to_string(), l.options.clone().unwrap_or_default())),
        }
    });

    let extra_hosts = def
        .extra_hosts
        .iter()
        .flatten()
        .filter_map(|h| {
            Some(format!(
                "{}:{}",
                h.hostname.as_ref()?,
                h.ip_address.as_ref()?
            ))
        })
        .collect();

    Ok(ContainerSpec {
        name: ctx.docker_name(&name),
        image,
        entrypoint: def.entry_point.clone(),
        cmd: def.command.clone(),
        env,
        working_dir: def.working_directory.clone(),
        user: def.user.clone(),
        hostname: def.hostname.clone(),
        labels,
        ports,
        health,
        stop_timeout: Some(stop_timeout(ctx, def)),
        network_mode: network_mode.to_string(),
        network_disabled: def.disable_networking == Some(true),
        links,
        binds,
        volumes_from,
        privileged: def.privileged == Some(true),
        readonly_rootfs: def.readonly_root_filesystem == Some(true),
        dns: def.dns_servers.clone().unwrap_or_default(),
        dns_search: def.dns_search_domains.clone().unwrap_or_default(),
        extra_hosts,
        // ECS gives a container without a cpu value the minimum of 2 shares
        // (Docker's floor), not Docker's default of 1024.
        cpu_shares: Some(i64::from(def.cpu.unwrap_or(0)).max(2)),
        memory: def.memory.map(|m| i64::from(m) * MIB),
        memory_reservation: def.memory_reservation.map(|m| i64::from(m) * MIB),
        ulimits,
        init: linux.init_process_enabled,
        cap_add: linux
            .capabilities
            .as_ref()
            .and_then(|c| c.add.clone())
            .unwrap_or_default(),
        cap_drop: linux
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default(),
        shm_size: linux.shared_memory_size.map(|m| i64::from(m) * MIB),
        tmpfs,
        security_opt: def.docker_security_options.clone().unwrap_or_default(),
        sysctls: def
            .system_controls
            .iter()
            .flatten()
            .filter_map(|s| Some((s.namespace.clone()?, s.value.clone()?)))
            .collect(),
        log_driver: log.as_ref().map(|(d, _)| d.clone()),
        log_options: log.map(|(_, o)| o).unwrap_or_default(),
    })
}

pub fn protocol(p: Option<ecs::TransportProtocol>) -> Protocol {
    match p {
        Some(ecs::TransportProtocol::Udp) => Protocol::Udp,
        _ => Protocol::Tcp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TaskContext {
        TaskContext {
            cluster: "default".into(),
            instance_arn: "arn:aws:ecs:us-east-1:1:container-instance/default/i1".into(),
            task_arn: "arn:aws:ecs:us-east-1:1:task/default/abc123".into(),
            family: "web".into(),
            revision: 3,
            network_mode: ecs::NetworkMode::Bridge,
            host_ip: "127.0.0.2".into(),
            region: "us-east-1".into(),
            metadata_base: Some("http://172.17.0.1:51679/v4".into()),
            default_stop_timeout: Duration::from_secs(30),
        }
    }

    fn container(json: serde_json::Value) -> ecs::ContainerDefinition {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn maps_a_full_container_definition() {
        let def = container(serde_json::json!({
            "name": "app", "image": "img:1", "command": ["run"], "entryPoint": ["/bin/x"],
            "environment": [{"name": "A", "value": "1"}, {"name": "AWS_REGION", "value": "mine"}],
            "workingDirectory": "/w", "user": "1000", "hostname": "h",
            "dockerLabels": {"team": "x", "com.amazonaws.ecs.cluster": "spoofed"},
            "cpu": 256, "memory": 128, "memoryReservation": 64,
            "ulimits": [{"name": "nofile", "softLimit": 10, "hardLimit": 20}],
            "readonlyRootFilesystem": true, "privileged": true,
            "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.1"}],
            "dnsServers": ["1.1.1.1"],
            "portMappings": [{"containerPort": 80}, {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}],
            "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true},
                            {"sourceVolume": "scratch", "containerPath": "/s"}],
            "volumesFrom": [{"sourceContainer": "side", "readOnly": true}],
            "links": ["side:s"],
            "healthCheck": {"command": ["CMD", "/hc"], "interval": 5},
            "stopTimeout": 7
        }));
        let vols: Vec<ecs::Volume> = serde_json::from_value(serde_json::json!([
            {"name": "data", "host": {"sourcePath": "/srv/data"}},
            {"name": "scratch", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}
        ]))
        .unwrap();
        let c = ctx();
        let volumes = task_volumes(&c, &vols).unwrap();
        let names = BTreeMap::from([("side".to_string(), c.docker_name("side"))]);
        let s = container_spec(&c, &def, &volumes, &names, "tok").unwrap();
        assert_eq!(s.name, "ecs-web-3-app-abc123");
        assert_eq!(s.cmd, Some(vec!["run".into()]));
        assert_eq!(s.entrypoint, Some(vec!["/bin/x".into()]));
        assert!(s.env.contains(&"A=1".to_string()));
        assert!(
            s.env.contains(&"AWS_REGION=mine".to_string()),
            "user env wins"
        );
        assert!(s
            .env
            .contains(&"ECS_CONTAINER_METADATA_URI_V4=http://172.17.0.1:51679/v4/tok".to_string()));
        assert!(s.env.contains(&"AWS_DEFAULT_REGION=us-east-1".to_string()));
        assert_eq!(s.labels["team"], "x");
        assert_eq!(
            s.labels[LABEL_CLUSTER], "default",
            "ECS labels cannot be spoofed"
        );
        assert_eq!(s.labels[LABEL_INSTANCE], c.instance_arn);
        assert_eq!(s.labels[LABEL_REVISION], "3");
        assert_eq!(
            (s.cpu_shares, s.memory, s.memory_reservation),
            (Some(256), Some(128 * MIB), Some(64 * MIB))
        );
        assert_eq!(
            s.ulimits,
            vec![UlimitSpec {
                name: "nofile".into(),
                soft: 10,
                hard: 20
            }]
        );
        assert!(s.readonly_rootfs && s.privileged);
        assert_eq!(s.extra_hosts, vec!["db:10.0.0.1".to_string()]);
        assert_eq!(
            s.ports[0],
            PortSpec {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: "127.0.0.2".into(),
                host_port: None
            }
        );
        assert_eq!(s.ports[1].host_port, Some(5353));
        assert_eq!(s.ports[1].protocol, Protocol::Udp);
        assert_eq!(
            s.binds,
            vec![
                "/srv/data:/data:ro".to_string(),
                "ecs-web-3-scratch-abc123:/s".to_string()
            ]
        );
        assert_eq!(s.volumes_from, vec!["ecs-web-3-side-abc123:ro".to_string()]);
        assert_eq!(s.links, vec!["ecs-web-3-side-abc123:s".to_string()]);
        let h = s.health.unwrap();
        assert_eq!(
            (h.interval, h.timeout, h.retries),
            (Duration::from_secs(5), Duration::from_secs(5), 3)
        );
        assert_eq!(s.stop_timeout, Some(Duration::from_secs(7)));
    }

    #[test]
    fn awslogs_containers_log_locally_for_the_agent_to_ship() {
        let def = container(serde_json::json!({"name": "a", "image": "i",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}));
        let s = container_spec(&ctx(), &def, &BTreeMap::new(), &BTreeMap::new(), "t").unwrap();
        assert_eq!(s.log_driver.as_deref(), Some("json-file"));
        // Its own rotation, not the daemon's default (which may be small).
        assert_eq!(s.log_options["max-size"], "256m");
        assert_eq!(s.log_options["max-file"], "4");
        let def = container(serde_json::json!({"name": "a", "image": "i",
            "logConfiguration": {"logDriver": "syslog", "options": {"tag": "x"}}}));
        let s = container_spec(&ctx(), &def, &BTreeMap::new(), &BTreeMap::new(), "t").unwrap();
        assert_eq!(s.log_driver.as_deref(), Some("syslog"));
        assert_eq!(s.log_options["tag"], "x");
    }

    #[test]
    fn rejects_awsvpc_and_unknown_volumes() {
        let mut c = ctx();
        c.network_mode = ecs::NetworkMode::Awsvpc;
        let def = container(serde_json::json!({"name": "a", "image": "i"}));
        let err = container_spec(&c, &def, &BTreeMap::new(), &BTreeMap::new(), "t").unwrap_err();
        assert!(err.0.contains("awsvpc"), "{err}");
        let c = ctx();
        let def = container(serde_json::json!({"name": "a", "image": "i",
            "mountPoints": [{"sourceVolume": "nope", "containerPath": "/x"}]}));
        let err = container_spec(&c, &def, &BTreeMap::new(), &BTreeMap::new(), "t").unwrap_err();
        assert!(err.0.contains("nope"), "{err}");
    }

    #[test]
    fn host_mode_publishes_no_ports_and_defaults_cpu_to_two_shares() {
        let mut c = ctx();
        c.network_mode = ecs::NetworkMode::Host;
        let def = container(
            serde_json::json!({"name": "a", "image": "i", "portMappings": [{"containerPort": 80}]}),
        );
        let s = container_spec(&c, &def, &BTreeMap::new(), &BTreeMap::new(), "t").unwrap();
        assert!(s.ports.is_empty());
        assert_eq!(s.network_mode, "host");
        assert_eq!(s.cpu_shares, Some(2));
    }

    #[test]
    fn overrides_replace_command_and_merge_environment() {
        let def = container(
            serde_json::json!({"name": "a", "image": "i", "command": ["x"],
            "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}),
        );
        let o: ecs::TaskOverride = serde_json::from_value(serde_json::json!({"containerOverrides": [
            {"name": "a", "command": ["y"], "environment": [{"name": "B", "value": "3"}], "memory": 64}]})).unwrap();
        let d = apply_overrides(&def, Some(&o));
        assert_eq!(d.command, Some(vec!["y".to_string()]));
        assert_eq!(d.memory, Some(64));
        let env: Vec<_> = d
            .environment
            .unwrap()
            .into_iter()
            .map(|kv| (kv.name.unwrap(), kv.value.unwrap()))
            .collect();
        assert_eq!(
            env,
            vec![("A".into(), "1".into()), ("B".into(), "3".into())]
        );
    }

    #[test]
    fn shared_volumes_keep_their_name() {
        let vols: Vec<ecs::Volume> = serde_json::from_value(serde_json::json!([
            {"name": "cache", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true}},
            {"name": "anon"}
        ])).unwrap();
        let v = task_volumes(&ctx(), &vols).unwrap();
        match &v["cache"] {
            VolumeSource::Named {
                spec,
                task_scoped,
                create,
            } => {
                assert_eq!(
                    (spec.name.as_str(), *task_scoped, *create),
                    ("cache", false, true)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &v["anon"],
            VolumeSource::Named {
                task_scoped: true,
                ..
            }
        ));
    }
}
