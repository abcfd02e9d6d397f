//! Agent configuration: the ECS agent's `/etc/ecs/ecs.config` keys that
//! apply, host resources and the attributes registered with the instance.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use flotilla_model::ecs;

use crate::runtime::RegistryAuth;

/// Everything `flotilla agent` is told or detects about its host.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub cluster: String,
    /// Address host ports are bound on (`--host-ip`), `0.0.0.0` by default.
    pub host_ip: String,
    pub region: String,
    pub availability_zone: Option<String>,
    /// Custom attributes (ECS_INSTANCE_ATTRIBUTES, `--attribute K=V`).
    pub attributes: BTreeMap<String, String>,
    /// MiB kept back from tasks (ECS_RESERVED_MEMORY).
    pub reserved_memory_mib: i64,
    /// Default stopTimeout (ECS_CONTAINER_STOP_TIMEOUT).
    pub stop_timeout: Duration,
    /// Default dependency startTimeout (ECS_CONTAINER_START_TIMEOUT).
    pub start_timeout: Duration,
    /// Delay before stopped containers are removed
    /// (ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION).
    pub cleanup_delay: Duration,
    /// Registry credentials (ECS_ENGINE_AUTH_TYPE / ECS_ENGINE_AUTH_DATA).
    pub registry_auth: BTreeMap<String, RegistryAuth>,
    /// Port of the task metadata endpoint on the Docker bridge gateway
    /// (`--metadata-port`); `Some(0)` picks a free one each run (fine for
    /// tests, but then containers adopted by a restarted agent keep a stale
    /// URL). `None` applies the rule in [`crate::host`]: 51679 for the only
    /// agent of a machine, a remembered free port for each of several.
    pub metadata_port: Option<u16>,
    /// How often running containers' CPU and memory are sampled and sent
    /// (`--stats-interval`, ECS_POLLING_METRICS_WAIT_DURATION); `None`
    /// turns sampling off (ECS_DISABLE_METRICS=true).
    pub stats_interval: Option<Duration>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            cluster: "default".to_string(),
            host_ip: "0.0.0.0".to_string(),
            region: "us-east-1".to_string(),
            availability_zone: None,
            attributes: BTreeMap::new(),
            reserved_memory_mib: 0,
            stop_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(180),
            cleanup_delay: Duration::from_secs(3 * 3600),
            registry_auth: BTreeMap::new(),
            metadata_port: None,
            stats_interval: Some(DEFAULT_STATS_INTERVAL),
        }
    }
}

/// How often containers are sampled unless told otherwise.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);

/// A bad ecs.config value, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// ECS durations: `30s`, `5m`, `3h`, `1h30m`, `500ms`, or bare seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let secs = match unit.as_str() {
            "ms" => v / 1000.0,
            "s" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total)
}

/// Applies `KEY=VALUE` lines of an ecs.config file (comments and unknown
/// keys ignored) on top of `config`.
pub fn apply_ecs_config(config: &mut AgentConfig, text: &str) -> Result<(), ConfigError> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            vars.insert(k.trim().to_string(), v.to_string());
        }
    }
    apply_vars(config, &vars)
}

/// Applies ECS agent variables (from ecs.config or the environment).
pub fn apply_vars(
    config: &mut AgentConfig,
    vars: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if let Some(v) = get("ECS_CLUSTER") {
        config.cluster = v.to_string();
    }
    if let Some(v) = get("ECS_AVAILABILITY_ZONE") {
        config.availability_zone = Some(v.to_string());
    }
    if let Some(v) = get("AWS_DEFAULT_REGION").or_else(|| get("AWS_REGION")) {
        config.region = v.to_string();
    }
    if let Some(v) = get("ECS_RESERVED_MEMORY") {
        config.reserved_memory_mib = v
            .parse()
            .map_err(|_| err("ECS_RESERVED_MEMORY", "must be a whole number of MiB"))?;
    }
    for (key, slot) in [
        ("ECS_CONTAINER_STOP_TIMEOUT", &mut config.stop_timeout),
        ("ECS_CONTAINER_START_TIMEOUT", &mut config.start_timeout),
        (
            "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION",
            &mut config.cleanup_delay,
        ),
    ] {
        if let Some(v) = get(key) {
            *slot = parse_duration(v)
                .ok_or_else(|| err(key, "must be a duration such as 30s, 5m or 3h"))?;
        }
    }
    if let Some(v) = get("ECS_POLLING_METRICS_WAIT_DURATION") {
        let d = parse_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
            err(
                "ECS_POLLING_METRICS_WAIT_DURATION",
                "must be a positive duration such as 1s or 10s",
            )
        })?;
        config.stats_interval = Some(d);
    }
    match get("ECS_DISABLE_METRICS") {
        Some("true") => config.stats_interval = None,
        Some("false") | None => {}
        Some(_) => return Err(err("ECS_DISABLE_METRICS", "must be true or false")),
    }
    if let Some(v) = get("ECS_INSTANCE_ATTRIBUTES") {
        let map: BTreeMap<String, String> = serde_json::from_str(v).map_err(|e| {
            err(
                "ECS_INSTANCE_ATTRIBUTES",
                format!("must be a JSON object of strings: {e}"),
            )
        })?;
        config.attributes.extend(map);
    }
    if let Some(data) = get("ECS_ENGINE_AUTH_DATA") {
        let kind = get("ECS_ENGINE_AUTH_TYPE").unwrap_or("docker");
        config.registry_auth = parse_engine_auth(kind, data)?;
    }
    Ok(())
}

/// ECS_ENGINE_AUTH_DATA: `dockercfg` is `{"REGISTRY": {"auth": "b64", "email": …}}`,
/// `docker` is `{"REGISTRY": {"username": …, "password": …, "email": …}}`.
pub fn parse_engine_auth(
    kind: &str,
    data: &str,
) -> Result<BTreeMap<String, RegistryAuth>, ConfigError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
        email: Option<String>,
    }
    if kind != "docker" && kind != "dockercfg" {
        return Err(err("ECS_ENGINE_AUTH_TYPE", "must be docker or dockercfg"));
    }
    let map: BTreeMap<String, Entry> = serde_json::from_str(data).map_err(|e| {
        err(
            "ECS_ENGINE_AUTH_DATA",
            format!("must be a JSON object keyed by registry: {e}"),
        )
    })?;
    let mut out = BTreeMap::new();
    for (registry, e) in map {
        let (mut username, mut password) = (e.username, e.password);
        if let Some(auth) = &e.auth {
            // dockercfg: base64 of user:password.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                username = Some(u.to_string());
                password = Some(p.to_string());
            }
        }
        out.insert(
            registry_host(&registry),
            RegistryAuth {
                username,
                password,
                email: e.email,
                auth: e.auth,
                server_address: Some(registry.clone()),
            },
        );
    }
    Ok(out)
}

const DOCKER_HUB: &str = "index.docker.io";

/// `https://index.docker.io/v1/` → `index.docker.io`.
fn registry_host(registry: &str) -> String {
    let r = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = r.split('/').next().unwrap_or(r);
    match host {
        "docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// The registry an image comes from: the first path component when it looks
/// like a host (has a dot or a port, or is `localhost`), else Docker Hub.
pub fn image_registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            registry_host(first)
        }
        _ => DOCKER_HUB.to_string(),
    }
}

pub fn auth_for_image(auth: &BTreeMap<String, RegistryAuth>, image: &str) -> Option<RegistryAuth> {
    auth.get(&image_registry(image)).cloned()
}

/// What the host offers tasks: CPU units (1024 per core) and MiB of memory
/// less the reservation.
pub fn detect_resources(reserved_memory_mib: i64) -> (i64, i64) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let total_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    (
        cores as i64 * 1024,
        (total_mib - reserved_memory_mib).max(0),
    )
}

fn resource(name: &str, value: i64) -> ecs::Resource {
    ecs::Resource {
        name: Some(name.to_string()),
        r#type: Some("INTEGER".to_string()),
        integer_value: Some(i32::try_from(value).unwrap_or(i32::MAX)),
        ..Default::default()
    }
}

/// `totalResources` for RegisterContainerInstance: CPU, MEMORY and the
/// ports the agent itself holds (none besides its metadata port).
pub fn total_resources(cpu: i64, memory_mib: i64, reserved_ports: &[u16]) -> Vec<ecs::Resource> {
    let ports: Vec<String> = reserved_ports.iter().map(u16::to_string).collect();
    vec![
        resource("CPU", cpu),
        resource("MEMORY", memory_mib),
        ecs::Resource {
            name: Some("PORTS".to_string()),
            r#type: Some("STRINGSET".to_string()),
            string_set_value: Some(ports),
            ..Default::default()
        },
        ecs::Resource {
            name: Some("PORTS_UDP".to_string()),
            r#type: Some("STRINGSET".to_string()),
            string_set_value: Some(Vec::new()),
            ..Default::default()
        },
    ]
}

/// Built-in attributes and capabilities to register, plus the custom ones.
/// `docker_api_version` is the engine's (e.g. `1.41`): every
/// `docker-remote-api.1.17` … up to it is a capability, as ECS lists them.
pub fn attributes(config: &AgentConfig, docker_api_version: &str) -> Vec<ecs::Attribute> {
    let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
    out.insert("ecs.os-type".into(), Some("linux".into()));
    out.insert("ecs.os-family".into(), Some("LINUX".into()));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "arm64",
        other => other,
    };
    out.insert("ecs.cpu-architecture".into(), Some(arch.into()));
    if let Some(az) = &config.availability_zone {
        out.insert("ecs.availability-zone".into(), Some(az.clone()));
    }
    for cap in [
        "com.amazonaws.ecs.capability.privileged-container",
        "com.amazonaws.ecs.capability.logging-driver.json-file",
        "com.amazonaws.ecs.capability.logging-driver.syslog",
        "com.amazonaws.ecs.capability.logging-driver.none",
        // The agent ships awslogs output itself (crate::logs), with its own
        // credentials, so also for tasks that name an execution role.
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "ecs.capability.execution-role-awslogs",
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "ecs.capability.docker-plugin.local",
        "ecs.capability.task-eni",
    ] {
        // awsvpc (task-eni) is not supported: do not claim it.
        if cap != "ecs.capability.task-eni" {
            out.insert(cap.into(), None);
        }
    }
    if let Some(minor) = docker_api_version
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
    {
        for m in 17..=minor {
            out.insert(
                format!("com.amazonaws.ecs.capability.docker-remote-api.1.{m}"),
                None,
            );
        }
    }
    for (k, v) in &config.attributes {
        out.insert(k.clone(), Some(v.clone()));
    }
    out.into_iter()
        .map(|(name, value)| ecs::Attribute {
            name: Some(name),
            value,
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ecs_config() {
        let mut c = AgentConfig::default();
        let text = r#"
# comment
ECS_CLUSTER=prod
ECS_RESERVED_MEMORY=256
ECS_CONTAINER_STOP_TIMEOUT=10s
ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=1h30m
ECS_INSTANCE_ATTRIBUTES={"stack": "blue", "tier": "web"}
ECS_ENGINE_AUTH_TYPE=dockercfg
ECS_ENGINE_AUTH_DATA={"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz", "email": "a@b"}}
ECS_AVAILABILITY_ZONE=us-east-1a
ECS_POLLING_METRICS_WAIT_DURATION=1s
UNKNOWN_KEY=whatever
"#;
        apply_ecs_config(&mut c, text).unwrap();
        assert_eq!(c.cluster, "prod");
        assert_eq!(c.reserved_memory_mib, 256);
        assert_eq!(c.stop_timeout, Duration::from_secs(10));
        assert_eq!(c.cleanup_delay, Duration::from_secs(5400));
        assert_eq!(c.attributes["stack"], "blue");
        assert_eq!(c.availability_zone.as_deref(), Some("us-east-1a"));
        assert_eq!(c.stats_interval, Some(Duration::from_secs(1)));
        apply_ecs_config(&mut c, "ECS_DISABLE_METRICS=true").unwrap();
        assert_eq!(c.stats_interval, None);
        let auth = auth_for_image(&c.registry_auth, "nginx:latest").unwrap();
        assert_eq!(
            (auth.username.as_deref(), auth.password.as_deref()),
            (Some("user"), Some("pass"))
        );
        assert!(auth_for_image(&c.registry_auth, "reg.example.com/app").is_none());
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let mut c = AgentConfig::default();
        let e = apply_ecs_config(&mut c, "ECS_RESERVED_MEMORY=lots").unwrap_err();
        assert_eq!(e.key, "ECS_RESERVED_MEMORY");
        let e = apply_ecs_config(&mut c, "ECS_INSTANCE_ATTRIBUTES=[1]").unwrap_err();
        assert_eq!(e.key, "ECS_INSTANCE_ATTRIBUTES");
        let e = apply_ecs_config(&mut c, "ECS_POLLING_METRICS_WAIT_DURATION=0s").unwrap_err();
        assert_eq!(e.key, "ECS_POLLING_METRICS_WAIT_DURATION");
    }

    #[test]
    fn docker_auth_type_and_registry_hosts() {
        let auth = parse_engine_auth(
            "docker",
            r#"{"reg.example.com:5000": {"username": "u", "password": "p"}}"#,
        )
        .unwrap();
        assert!(auth_for_image(&auth, "reg.example.com:5000/team/app:1").is_some());
        assert_eq!(image_registry("localhost/app"), "localhost");
        assert_eq!(image_registry("team/app"), "index.docker.io");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn attributes_and_resources() {
        let mut c = AgentConfig::default();
        c.attributes.insert("stack".into(), "blue".into());
        let attrs = attributes(&c, "1.41");
        let names: Vec<_> = attrs.iter().filter_map(|a| a.name.clone()).collect();
        for want in [
            "ecs.os-type",
            "ecs.cpu-architecture",
            "ecs.capability.container-health-check",
            "com.amazonaws.ecs.capability.logging-driver.json-file",
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "com.amazonaws.ecs.capability.docker-remote-api.1.41",
            "com.amazonaws.ecs.capability.docker-remote-api.1.17",
            "stack",
        ] {
            assert!(names.iter().any(|n| n == want), "missing {want}");
        }
        assert!(!names.iter().any(|n| n == "ecs.capability.task-eni"));
        let (cpu, mem) = detect_resources(128);
        assert!(cpu >= 1024 && mem > 0);
        let r = total_resources(cpu, mem, &[51679]);
        assert_eq!(r[0].name.as_deref(), Some("CPU"));
    }
}
