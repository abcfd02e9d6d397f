//! The stats sampler against the real Docker Engine: the agent's main loop
//! (over an in-process control plane) samples a container burning CPU, one
//! holding memory and an idle one every second, and sends what `docker
//! stats` would show, in ECS units.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_agent::control::{bind_metadata, run, AgentOutput, ChannelControlPlane, ControlEvent};
use flotilla_agent::engine::EngineConfig;
use flotilla_agent::spec::{LABEL_CONTAINER_NAME, LABEL_INSTANCE};
use flotilla_agent::testing::{ensure_test_image, ContainerGuard, TEST_IMAGE};
use flotilla_agent::DockerRuntime;
use flotilla_model::agent::{ContainerStats, DesiredTask};
use serde_json::{json, Value};

fn task(id: &str, command: &[&str]) -> DesiredTask {
    DesiredTask {
        task: serde_json::from_value(json!({
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/test/{id}{}", std::process::id()),
            "desiredStatus": "RUNNING",
        }))
        .unwrap(),
        definition: serde_json::from_value(json!({
            "family": format!("stats-{id}"), "revision": 1, "networkMode": "bridge",
            "containerDefinitions": [{"name": id, "image": TEST_IMAGE, "command": command,
                                      "memory": 256, "cpu": 1024}]
        }))
        .unwrap(),
    }
}

/// GET over HTTP/1.0 from the test process; the JSON body.
fn get_json(url: &str) -> Option<Value> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let mut s =
        std::net::TcpStream::connect_timeout(&authority.parse().ok()?, Duration::from_secs(2))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_cpu_and_memory_of_running_containers() {
    let docker = DockerRuntime::connect().await.expect("docker");
    ensure_test_image(docker.client())
        .await
        .expect("test image");
    let instance = format!(
        "arn:aws:ecs:us-east-1:1:container-instance/test/stats-{}",
        std::process::id()
    );
    let _guard = ContainerGuard::new(docker.client(), LABEL_INSTANCE, &instance).await;
    let (listener, base) = bind_metadata(&docker, 0).await.expect("metadata endpoint");

    let mut config = EngineConfig::new("test", &instance);
    config.stats_interval = Some(Duration::from_secs(1));
    config.metadata_base = Some(base);
    config.cleanup_delay = Duration::from_secs(60);
    let (cp, events, mut out) = ChannelControlPlane::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run(
        config,
        Arc::new(docker.clone()),
        Some(listener),
        cp,
        async move {
            let _ = stopped.await;
        },
    ));
    let tasks = vec![
        task("burn", &["burn", "2"]),
        task("hold", &["hold", "64"]),
        task("idle", &["sleep"]),
    ];
    let arns: HashMap<String, &str> = tasks
        .iter()
        .zip(["burn", "hold", "idle"])
        .map(|(t, n)| (t.task.task_arn.clone().unwrap(), n))
        .collect();
    events
        .send(ControlEvent::Desired { version: 1, tasks })
        .await
        .unwrap();

    // Collect samples until each container has a few (bounded in time).
    let mut samples: HashMap<&str, Vec<ContainerStats>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while samples.len() < 3 || samples.values().any(|s| s.len() < 4) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "too few samples within 60 s: {samples:?}");
        match tokio::time::timeout(left, out.recv()).await {
            Ok(Some(AgentOutput::Stats(ticks))) => {
                for t in ticks {
                    let name = arns[&t.task_arn];
                    assert_eq!(t.containers.len(), 1, "{t:?}");
                    assert_eq!(t.containers[0].container_name, name);
                    samples.entry(name).or_default().extend(t.containers);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                panic!("the agent stopped sending before enough samples: {samples:?}")
            }
        }
    }
    let max = |name: &str, f: fn(&ContainerStats) -> f64| {
        samples[name].iter().map(f).fold(f64::MIN, f64::max)
    };
    let min = |name: &str, f: fn(&ContainerStats) -> f64| {
        samples[name].iter().map(f).fold(f64::MAX, f64::min)
    };
    // Two spinning threads: up to 2048 units on an idle 2-core machine, but
    // this one is shared (Docker's containers together get a third of it
    // when every other process is busy too, split by cpu shares): ask for
    // a tenth of a core in some second, against nothing for the idle one.
    assert!(
        max("burn", |s| s.cpu_units) >= 100.0,
        "burn: {:?}",
        samples["burn"]
    );
    assert!(
        max("idle", |s| s.cpu_units) < 20.0,
        "idle: {:?}",
        samples["idle"]
    );
    // 64 MiB written: resident, and counted (nothing of it is file cache).
    let held = min("hold", |s| s.memory_mib);
    assert!((63.0..96.0).contains(&held), "hold: {:?}", samples["hold"]);
    assert!(
        max("idle", |s| s.memory_mib) < 16.0,
        "idle: {:?}",
        samples["idle"]
    );
    eprintln!(
        "burn: max {:.0} CPU units; hold: min {:.1} MiB; idle: max {:.1} units, {:.1} MiB",
        max("burn", |s| s.cpu_units),
        held,
        max("idle", |s| s.cpu_units),
        max("idle", |s| s.memory_mib)
    );
    for s in samples.values().flatten() {
        assert!(s.interval > 0.2 && s.interval < 30.0, "{s:?}");
        assert!(s.timestamp > 1.6e9, "{s:?}");
    }

    // The metadata endpoint serves the sampler's reading, with the previous
    // one as precpu (a one-shot Docker reading has none).
    let burner = docker
        .client()
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![
                    format!("{LABEL_CONTAINER_NAME}=burn"),
                    format!("{LABEL_INSTANCE}={instance}"),
                ],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap();
    let id = burner[0].id.clone().unwrap();
    let env = docker
        .client()
        .inspect_container(
            &id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap()
        .config
        .unwrap()
        .env
        .unwrap();
    let url = env
        .iter()
        .find_map(|e| e.strip_prefix("ECS_CONTAINER_METADATA_URI_V4="))
        .unwrap()
        .to_string();
    let stats = tokio::task::spawn_blocking(move || get_json(&format!("{url}/stats")))
        .await
        .unwrap()
        .expect("metadata /stats");
    assert!(
        stats["preread"].as_str().unwrap_or("").starts_with("20"),
        "{stats}"
    );
    assert!(
        stats["precpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats}"
    );

    let _ = stop.send(());
    agent.await.unwrap().unwrap();
}
