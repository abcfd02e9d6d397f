//! End-to-end scale benchmark: services of many tasks placed onto many
//! simulated hosts through the whole control plane (API, store, scheduler,
//! controllers, agent gateway), until every task reports RUNNING.
//!
//!     cargo bench -p flotilla-sim --bench scale
//!     FLOTILLA_BENCH_HOSTS=10000 FLOTILLA_BENCH_SERVICES=1000 FLOTILLA_BENCH_TASKS=1000 cargo bench -p flotilla-sim --bench scale
//!
//! Prints the time until all tasks run, placements per second, and the
//! control plane's peak memory.
//!
//! The simulated hosts run in child processes (this bench binary again,
//! `FLOTILLA_BENCH_HOSTS_PER_PROCESS` hosts each), as `flotilla sim` would
//! beside a real server: each host holds a WebSocket, and one process could
//! not hold both ends of 10,000 of them within its open-file limit. The
//! control plane runs in this process, so its memory is measured alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_client::Client;
use flotilla_model::ecs;
use flotilla_sim::{start_hosts, Behaviour, HostSpec};
use futures_util::StreamExt;

/// The allocator the `flotilla` binary uses, so the control plane measured
/// here is the one users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user and system) this process has used so far: the control
/// plane's own work, which varies less with a busy machine than wall time.
fn cpu_seconds() -> f64 {
    // /proc/self/stat: fields 14 and 15 (utime, stime) in clock ticks,
    // counted after the parenthesised command name.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// A child process's job: start `FLOTILLA_CHILD_HOSTS` simulated hosts
/// against `FLOTILLA_CHILD_ENDPOINT`, say "ready" on stdout, and keep them
/// until the bench kills the process.
async fn host_process() {
    let endpoint = std::env::var("FLOTILLA_CHILD_ENDPOINT").expect("endpoint");
    let hosts = env("FLOTILLA_CHILD_HOSTS", 0);
    let first = env("FLOTILLA_CHILD_FIRST", 0);
    let client = Client::ecs(
        &endpoint,
        "AKIABENCH00000000001",
        "bench-secret",
        "us-east-1",
    );
    // Zones continue across processes: host i is in zone i % 3.
    let zones: Vec<String> = (0..3)
        .map(|z| format!("us-east-1{}", ["a", "b", "c"][(first + z) % 3]))
        .collect();
    let template = HostSpec::new("default", 16 * 1024, 64 * 1024);
    let agents = start_hosts(
        &client,
        &template,
        hosts,
        &zones,
        &Behaviour::default(),
        |_, _| {},
    )
    .await
    .expect("hosts");
    println!("ready");
    std::future::pending::<()>().await;
    drop(agents);
}

/// Starts the hosts in child processes and returns once all are connected.
async fn spawn_hosts(
    endpoint: &str,
    hosts: usize,
    per_process: usize,
) -> Vec<tokio::process::Child> {
    let exe = std::env::current_exe().expect("bench binary");
    let mut children = Vec::new();
    let mut first = 0;
    while first < hosts {
        let n = per_process.min(hosts - first);
        let child = tokio::process::Command::new(&exe)
            .env("FLOTILLA_BENCH_CHILD", "hosts")
            .env("FLOTILLA_CHILD_ENDPOINT", endpoint)
            .env("FLOTILLA_CHILD_HOSTS", n.to_string())
            .env("FLOTILLA_CHILD_FIRST", first.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("host process");
        children.push(child);
        first += n;
    }
    for child in &mut children {
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(out), &mut line)
            .await
            .expect("ready");
        assert_eq!(
            line.trim(),
            "ready",
            "a host process failed to start its hosts"
        );
    }
    children
}

/// Every 200 ms while `on`: one CreateService of a task-less service and one
/// DescribeServices, timed. Returns their latencies.
async fn api_probe(
    client: Client,
    on: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut create, mut describe) = (Vec::new(), Vec::new());
    let mut n = 0;
    while on.load(std::sync::atomic::Ordering::Relaxed) {
        let name = format!("probe-{n:05}");
        n += 1;
        let req = ecs::CreateServiceRequest {
            service_name: Some(name.clone()),
            task_definition: Some("bench".into()),
            desired_count: Some(0),
            ..Default::default()
        };
        let sent = Instant::now();
        let _: ecs::CreateServiceResponse = client
            .call("CreateService", &req)
            .await
            .expect("probe service");
        create.push(sent.elapsed());
        let req = ecs::DescribeServicesRequest {
            services: Some(vec![name]),
            ..Default::default()
        };
        let sent = Instant::now();
        let _: ecs::DescribeServicesResponse = client
            .call("DescribeServices", &req)
            .await
            .expect("probe describe");
        describe.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (create, describe)
}

/// How many container instances match a Cluster Query Language filter.
async fn count_instances(client: &Client, filter: &str) -> usize {
    let mut count = 0;
    let mut token = None;
    loop {
        let req = ecs::ListContainerInstancesRequest {
            filter: Some(filter.into()),
            next_token: token,
            max_results: Some(100),
            ..Default::default()
        };
        let page: ecs::ListContainerInstancesResponse = client
            .call("ListContainerInstances", &req)
            .await
            .expect("list instances");
        count += page.container_instance_arns.map_or(0, |a| a.len());
        token = page.next_token;
        if token.is_none() {
            return count;
        }
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("FLOTILLA_BENCH_CHILD").is_ok() {
        return host_process().await;
    }
    let hosts = env("FLOTILLA_BENCH_HOSTS", 1000);
    let services = env("FLOTILLA_BENCH_SERVICES", 100);
    let per_service = env("FLOTILLA_BENCH_TASKS", 100);
    let per_process = env("FLOTILLA_BENCH_HOSTS_PER_PROCESS", 5000).max(1);
    let total = services * per_service;
    println!(
        "scale: {hosts} simulated hosts, {services} services x {per_service} tasks = {total} tasks"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let store = flotilla_server::open_store(&dir.path().join("flotilla.db")).expect("store");
    let stores = flotilla_server::Stores::with_state(dir.path(), Arc::new(store)).expect("stores");
    let creds = flotilla_auth::Credentials::from_toml(
        "[[principal]]\nname = \"bench\"\naccess_key_id = \"AKIABENCH00000000001\"\nsecret_access_key = \"bench-secret\"\naccount_id = \"111111111111\"\n",
    )
    .expect("credentials");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flotilla_server::run(listener, stores, creds, async {
        let _ = stopped.await;
    }));
    let client = Client::ecs(
        &endpoint,
        "AKIABENCH00000000001",
        "bench-secret",
        "us-east-1",
    );
    let _: ecs::CreateClusterResponse = client
        .call("CreateCluster", &ecs::CreateClusterRequest::default())
        .await
        .expect("cluster");

    let t = Instant::now();
    let children = spawn_hosts(&endpoint, hosts, per_process).await;
    println!(
        "  {hosts} hosts registered and connected in {:.1} s ({} host processes)",
        t.elapsed().as_secs_f64(),
        children.len()
    );

    let td = ecs::RegisterTaskDefinitionRequest {
        family: Some("bench".into()),
        container_definitions: Some(vec![ecs::ContainerDefinition {
            name: Some("app".into()),
            image: Some("flotilla-test:latest".into()),
            cpu: Some(8),
            memory: Some(16),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let _: ecs::RegisterTaskDefinitionResponse = client
        .call("RegisterTaskDefinition", &td)
        .await
        .expect("taskdef");

    // A probe measures the API while the whole run goes on: every 200 ms a
    // CreateService (of a service with no tasks, so it adds no work) and a
    // DescribeServices, from their own client, until every task runs.
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = tokio::spawn(api_probe(client.clone(), probing.clone()));

    // Services are created by concurrent clients, as a deployment tool
    // would; each CreateService is answered once the service is durable.
    let creators = env("FLOTILLA_BENCH_CREATORS", 16);
    let t = Instant::now();
    let created = std::sync::atomic::AtomicUsize::new(0);
    let created = &created;
    let latencies: Vec<Duration> = futures_util::stream::iter(0..services)
        .map(|s| {
            let client = client.clone();
            async move {
                let req = ecs::CreateServiceRequest {
                    service_name: Some(format!("svc-{s:05}")),
                    task_definition: Some("bench".into()),
                    desired_count: Some(per_service as i32),
                    ..Default::default()
                };
                let sent = Instant::now();
                let _: ecs::CreateServiceResponse =
                    client.call("CreateService", &req).await.expect("service");
                let done = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if done.is_multiple_of(100) {
                    println!(
                        "  … {done}/{services} services created after {:.1} s",
                        t.elapsed().as_secs_f64()
                    );
                }
                sent.elapsed()
            }
        })
        .buffer_unordered(creators)
        .collect()
        .await;
    let mut latencies = latencies;
    latencies.sort();
    let pct =
        |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "  CreateService latency ({creators} concurrent clients): p50 {:.1} ms, p99 {:.1} ms",
        pct(0.5),
        pct(0.99)
    );
    let created = t.elapsed();
    println!(
        "  {services} services created in {:.2} s",
        created.as_secs_f64()
    );

    // Poll the services (10 per DescribeServices) until every task runs,
    // with a pause between rounds as a waiting client would (the AWS CLI's
    // waiter pauses 15 s), so the poll does not take the control plane's CPU.
    let names: Vec<String> = (0..services).map(|s| format!("svc-{s:05}")).collect();
    let mut last_report = Instant::now();
    let mut best = (0, Instant::now());
    let all_running = loop {
        let mut running = 0usize;
        for chunk in names.chunks(10) {
            let req = ecs::DescribeServicesRequest {
                services: Some(chunk.to_vec()),
                ..Default::default()
            };
            let d: ecs::DescribeServicesResponse = client
                .call("DescribeServices", &req)
                .await
                .expect("describe");
            running += d
                .services
                .iter()
                .flatten()
                .map(|s| s.running_count.unwrap_or(0) as usize)
                .sum::<usize>();
        }
        if running >= total {
            break t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "  … {running}/{total} running after {:.0} s",
                t.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if running > best.0 {
            best = (running, Instant::now());
        }
        if best.1.elapsed() > Duration::from_secs(60) {
            let disconnected = count_instances(&client, "agentConnected == false").await;
            println!("  stalled: {running}/{total} running, no progress for 60 s; {disconnected} hosts disconnected");
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(1800) {
            println!("  gave up after 30 minutes with {running}/{total} running");
            break t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let secs = all_running.as_secs_f64();
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let (create, describe) = probe.await.expect("probe");
    println!("  API during the run (a probe every 200 ms until all RUNNING):");
    for (what, mut l) in [("CreateService", create), ("DescribeServices", describe)] {
        l.sort();
        if l.is_empty() {
            continue;
        }
        let p = |q: f64| l[((l.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        println!(
            "    {what}: {} calls, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.len(),
            p(0.5),
            p(0.99),
            p(1.0)
        );
    }
    println!("  all {total} tasks RUNNING {secs:.1} s after the first CreateService");
    println!(
        "  end to end: {:.0} placements/s (placed and reported RUNNING)",
        total as f64 / secs
    );
    println!(
        "  control plane CPU (this process, from start): {:.1} s",
        cpu_seconds()
    );
    println!(
        "  peak memory of the control plane (this process; the hosts run apart): {} MiB",
        peak_rss_mib()
    );

    // Tear down fast, so that a run started right after this one does not
    // share the machine with it: a graceful stop would record 10,000
    // disconnections and free a million tasks one by one, a minute or two
    // of full CPU. The hosts are stopped and the database removed; the
    // control plane simply exits.
    for mut child in children {
        let _ = child.kill().await;
    }
    let _ = stop;
    drop(server);
    let _ = std::fs::remove_dir_all(dir.path());
    std::process::exit(0);
}
