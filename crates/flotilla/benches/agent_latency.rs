//! Task latency through the whole system, on the real Docker Engine:
//!
//! - RunTask → RUNNING visible in DescribeTasks, against a plain
//!   `docker run -d` of the same image (the floor: what Docker itself costs);
//! - a container exiting → STOPPED visible in DescribeTasks (from Docker's
//!   own `FinishedAt` to the first DescribeTasks that shows it).
//!
//! The control plane runs in-process on 127.0.0.1 over SQLite, with one
//! in-process agent; DescribeTasks is polled every 5 ms.
//!
//! `cargo bench -p flotilla --bench agent_latency` (`BENCH_RUNS=N`, default 20).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::{container, Env};
use flotilla_agent::testing::{ContainerGuard, TEST_IMAGE, TEST_LABEL};
use serde_json::json;

const POLL: Duration = Duration::from_millis(5);

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(runs));
}

async fn wait_status(env: &Env, task: &str, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = env.task(task).await;
        if t["lastStatus"] == status {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task {task} never reached {status}: {t}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn bench(runs: usize) {
    let env = Env::start("bench").await;
    let agent = env.agent("bench", "127.0.0.1").await;
    env.wait_connected(&agent.arn, true).await;
    let sleep_td = env
        .register_task_definition("bench-sleep", json!([container("app", &["sleep"])]))
        .await;
    let exit_td = env
        .register_task_definition(
            "bench-exit",
            json!([container("app", &["exit", "0", "500"])]),
        )
        .await;

    // Warm-up: the first container start pays for cold caches.
    let t = env.run_task(&sleep_td, 1).await.remove(0);
    wait_status(&env, &t, "RUNNING").await;
    env.call("StopTask", json!({"cluster": env.cluster, "task": t}))
        .await;

    let mut flotilla = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let task = env.run_task(&sleep_td, 1).await.remove(0);
        wait_status(&env, &task, "RUNNING").await;
        flotilla.push(start.elapsed());
        env.call("StopTask", json!({"cluster": env.cluster, "task": task}))
            .await;
        wait_status(&env, &task, "STOPPED").await;
    }

    let label = format!("{TEST_LABEL}=bench-{}", std::process::id());
    let _guard = ContainerGuard::new(
        &env.docker,
        TEST_LABEL,
        &format!("bench-{}", std::process::id()),
    )
    .await;
    let mut docker = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new("docker")
            .args(["run", "-d", "--label", &label, TEST_IMAGE, "sleep"])
            .output()
            .unwrap();
        docker.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Command::new("docker")
            .args(["rm", "-f", &id])
            .output()
            .unwrap();
    }

    // The floor for exits: Docker's own `die` event, from FinishedAt.
    let mut docker_exits = Vec::new();
    for _ in 0..runs {
        let filters = std::collections::HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
            ("label".to_string(), vec![label.clone()]),
        ]);
        let mut events = env
            .docker
            .events(Some(bollard::query_parameters::EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }));
        let out = Command::new("docker")
            .args([
                "run", "-d", "--label", &label, TEST_IMAGE, "exit", "0", "500",
            ])
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        futures_util::StreamExt::next(&mut events)
            .await
            .unwrap()
            .unwrap();
        let seen = SystemTime::now();
        docker_exits.push(
            seen.duration_since(finished_at(&env, &id).await)
                .unwrap_or_default(),
        );
        Command::new("docker")
            .args(["rm", "-f", &id])
            .output()
            .unwrap();
    }

    let mut exits = Vec::new();
    for _ in 0..runs {
        let task = env.run_task(&exit_td, 1).await.remove(0);
        wait_status(&env, &task, "RUNNING").await;
        let id = env.containers_of(&task).await[0].id.clone().unwrap();
        wait_status(&env, &task, "STOPPED").await;
        let seen = SystemTime::now();
        exits.push(
            seen.duration_since(finished_at(&env, &id).await)
                .unwrap_or_default(),
        );
    }

    println!("task latency over {runs} runs (DescribeTasks polled every {POLL:?})");
    report("RunTask -> RUNNING (flotilla)", &mut flotilla);
    report("docker run -d (CLI)", &mut docker);
    report("container exit -> STOPPED (flotilla)", &mut exits);
    report("container exit -> die event (docker)", &mut docker_exits);
    agent.stop().await;
    env.stop().await;
}

/// Docker's `State.FinishedAt` of a container.
async fn finished_at(env: &Env, id: &str) -> SystemTime {
    let info = env
        .docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let finished = info.state.unwrap().finished_at.unwrap();
    let finished =
        time::OffsetDateTime::parse(&finished, &time::format_description::well_known::Rfc3339)
            .unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(finished.unix_timestamp_nanos() as u64)
}

fn report(what: &str, v: &mut [Duration]) {
    v.sort();
    let pct = |p: usize| v[((v.len() * p) / 100).min(v.len() - 1)];
    println!(
        "  {what:<40} median {:>7.1} ms   p90 {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms",
        ms(pct(50)),
        ms(pct(90)),
        ms(v[0]),
        ms(v[v.len() - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
