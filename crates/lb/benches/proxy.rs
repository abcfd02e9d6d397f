//! `cargo bench -p flotilla-lb --bench proxy`: requests/s and latency
//! (p50, p99, p999) through Flotilla's ALB listener, nginx and HAProxy, side
//! by side in one run. Each proxy forwards, with keep-alive connections and
//! round robin, to the SAME two backend containers of the project's test
//! image (`testimage/`, `serve` mode: an HTTP/1.1 server with keep-alive
//! answering `ok`), published on loopback addresses; the same wrk loads each
//! with the same connection count for the same bounded time. "backend
//! direct" is wrk against one backend container without a proxy.
//!
//! The bench builds the test image itself (as the tests do) and removes its
//! containers at the end, also when it fails. wrk, nginx and HAProxy are
//! Debian's (`apt-get install wrk nginx-light haproxy`); a peer that is not
//! installed is skipped with a message that says how to install it, and
//! without wrk or Docker nothing is measured.
//!
//! Settings (environment): `BENCH_CONNECTIONS` (default 32),
//! `BENCH_SECONDS` per measurement (default 10; a 2 s warm-up precedes
//! each), `BENCH_ROUNDS` (default 3: every proxy once per round, so each
//! sees the machine's load of the same minutes), `BENCH_THREADS` for wrk
//! (default 1), `BENCH_ONLY=flotilla,nginx` to measure some of them,
//! `BENCH_NODE_WORKERS` for Flotilla's worker threads (default 2, as
//! `flotilla lb` on this machine; 0 serves on the node's one thread).
//!
//! What bounds the figures: everything shares one machine. wrk, the proxy
//! under test, the two backends and Docker's port forwarding (docker-proxy)
//! compete for the same CPUs, so the figures compare the proxies' CPU cost
//! per request more than they measure any proxy's ceiling. Each proxy gets
//! two workers (nginx `worker_processes 2`, HAProxy `nbthread 2`, Flotilla
//! two worker threads, each with its own event loop, in a child process,
//! as `flotilla lb` runs). Every row says how busy each
//! part was: CPU used per second of the measurement (100 % = one core) by
//! the proxy, the backends (their containers and docker-proxy), wrk, and
//! the whole machine (including other work on it). After the medians of
//! each column, Flotilla and HAProxy are compared with nginx round by
//! round (the ratio of requests/s measured in the same minutes, and
//! whether the p99 was no worse), which the machine's drift between rounds
//! disturbs less than a ratio of medians.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use flotilla_agent::testing::{ContainerGuard, TEST_IMAGE, TEST_LABEL};

/// As in the `flotilla` binary, whose node this measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The two backend containers' published addresses.
const BACKENDS: [&str; 2] = ["127.0.7.2", "127.0.7.3"];
const BACKEND_PORT: u16 = 18080;
const FLOTILLA: &str = "127.0.7.11";
const NGINX: &str = "127.0.7.12";
const HAPROXY: &str = "127.0.7.13";
const PORT: u16 = 8080;
const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bench/1";
const WARM_UP_SECS: u64 = 2;
/// Linux's `USER_HZ`: the unit of the CPU times in `/proc`.
const TICKS_PER_SEC: f64 = 100.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // The Flotilla node runs in a child process of its own (this program
    // again), as nginx and HAProxy do, so no proxy shares a process with
    // the bench.
    if let Ok(backends) = std::env::var("BENCH_NODE_FOR") {
        let backends = backends
            .split(',')
            .map(|b| b.parse().expect("a backend address"))
            .collect();
        return run_node(backends);
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    let settings = Settings {
        connections: env_or("BENCH_CONNECTIONS", 32),
        seconds: env_or("BENCH_SECONDS", 10),
        threads: env_or("BENCH_THREADS", 1),
    };
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let Some(wrk) = which("wrk") else {
        println!("wrk is not installed (apt-get install wrk): nothing to measure with; skipping the benchmark");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let docker = match rt.block_on(connect_docker()) {
        Ok(d) => d,
        Err(e) => {
            println!("Docker is not available ({e}): the backends are containers; skipping the benchmark");
            return;
        }
    };
    let label = format!("flotilla-lb-bench-{}", std::process::id());
    // Removes the backend containers when dropped, also on a panic.
    let _containers = rt.block_on(ContainerGuard::new(&docker, TEST_LABEL, &label));
    let backend_pids = match rt.block_on(start_backends(&docker, &label)) {
        Ok(pids) => pids,
        Err(e) => {
            println!("cannot start the backend containers ({e}); skipping the benchmark");
            return;
        }
    };
    let backends: Vec<SocketAddr> = BACKENDS
        .iter()
        .map(|ip| SocketAddr::new(ip.parse().unwrap(), BACKEND_PORT))
        .collect();
    for b in &backends {
        assert!(wait_ready(*b), "backend container at {b} does not answer");
    }
    let mut backend_pids = backend_pids;
    backend_pids.extend(docker_proxy_pids());

    let dir = std::env::temp_dir().join(format!("flotilla-lb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == name))
    };
    let mut peers = Vec::new();
    if wanted("backend direct") {
        peers.push(Peer {
            name: "backend direct",
            addr: backends[0],
            child: None,
        });
    }
    if wanted("flotilla") {
        match start_flotilla(&backends) {
            Ok(child) => peers.push(Peer::new("flotilla", FLOTILLA, child)),
            Err(e) => println!("flotilla: cannot start its node ({e}); skipped"),
        }
    }
    if wanted("nginx") {
        match which("nginx") {
            Some(nginx) => match start_nginx(&nginx, &dir, &backends) {
                Ok(child) => peers.push(Peer::new("nginx", NGINX, child)),
                Err(e) => println!("nginx: cannot start it ({e}); skipped"),
            },
            None => println!("nginx is not installed (apt-get install nginx-light); skipped"),
        }
    }
    if wanted("haproxy") {
        match which("haproxy") {
            Some(haproxy) => match start_haproxy(&haproxy, &dir, &backends) {
                Ok(child) => peers.push(Peer::new("haproxy", HAPROXY, child)),
                Err(e) => println!("haproxy: cannot start it ({e}); skipped"),
            },
            None => println!("haproxy is not installed (apt-get install haproxy); skipped"),
        }
    }
    let script = dir.join("percentiles.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();

    println!(
        "wrk -t{} -c{} -d{}s after a {WARM_UP_SECS} s warm-up, {rounds} round(s); backends: 2 containers of {TEST_IMAGE} (`serve`) published on {} and {} port {BACKEND_PORT}; {} CPUs shared by loader, proxy, backends and whatever else runs",
        settings.threads,
        settings.connections,
        settings.seconds,
        BACKENDS[0],
        BACKENDS[1],
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let mut results: HashMap<&str, Vec<Measurement>> = HashMap::new();
    // Each round's measurements by proxy, for the paired comparison.
    let mut by_round: Vec<HashMap<&str, (f64, f64)>> = Vec::new();
    for round in 1..=rounds {
        by_round.push(HashMap::new());
        println!("round {round}/{rounds}");
        print_header();
        for peer in &peers {
            if !wait_ready(peer.addr) {
                println!("{:<16} not answering at {}; skipped", peer.name, peer.addr);
                continue;
            }
            let url = format!("http://{}/", peer.addr);
            let _ = run_wrk(&wrk, &script, &settings, WARM_UP_SECS, &url);
            match measure(&wrk, &script, &settings, &url, peer, &backend_pids) {
                Some(m) => {
                    print_row(peer.name, &m);
                    if let Some(r) = by_round.last_mut() {
                        r.insert(peer.name, (m.rps, m.p99));
                    }
                    results.entry(peer.name).or_default().push(m);
                }
                None => println!("{:<16} wrk failed", peer.name),
            }
        }
    }
    if rounds > 1 {
        println!(
            "median of {rounds} rounds (each column on its own; requests/s range in brackets)"
        );
        print_header();
        for peer in &peers {
            if let Some(ms) = results.get(peer.name) {
                print_median(peer.name, ms);
            }
        }
        for name in ["flotilla", "haproxy"] {
            print_paired(name, "nginx", &by_round);
        }
    }
    // Stops the proxies (also when a panic unwinds).
    drop(peers);
    let _ = std::fs::remove_dir_all(&dir);
}

struct Settings {
    connections: u64,
    seconds: u64,
    threads: u64,
}

struct Peer {
    name: &'static str,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // SIGTERM, so nginx's master takes its workers down with it
            // (SIGKILL would leave them holding the port).
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Peer {
    fn new(name: &'static str, ip: &str, child: Child) -> Peer {
        Peer {
            name,
            addr: SocketAddr::new(ip.parse().unwrap(), PORT),
            child: Some(child),
        }
    }
}

/// One wrk run and the CPU each part used during it.
struct Measurement {
    rps: f64,
    /// Microseconds.
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// CPU used per second of the run, 1.0 = one core.
    cpu_proxy: f64,
    cpu_backends: f64,
    cpu_wrk: f64,
    cpu_machine: f64,
}

fn print_header() {
    println!(
        "{:<16} {:>10} {:>9} {:>9} {:>9} {:>6}   CPU: {:>5} {:>8} {:>5} {:>7}   {:>12}  bound by",
        "proxy",
        "requests/s",
        "p50",
        "p99",
        "p999",
        "errors",
        "proxy",
        "backends",
        "wrk",
        "machine",
        "proxy µs/req"
    );
}

fn print_row(name: &str, m: &Measurement) {
    println!(
        "{name:<16} {:>10.0} {:>9} {:>9} {:>9} {:>6}        {:>5} {:>8} {:>5} {:>7}   {:>12.1}  {}",
        m.rps,
        micros(m.p50),
        micros(m.p99),
        micros(m.p999),
        m.errors,
        percent(m.cpu_proxy),
        percent(m.cpu_backends),
        percent(m.cpu_wrk),
        percent(m.cpu_machine),
        cpu_per_request(m),
        bound_by(m),
    );
}

/// `name` against `peer` round by round: each round measures the proxies
/// one after the other within the same minute or two, so the ratio of a
/// round cancels most of the machine's drift between rounds (the medians
/// of each column above do not pair them).
fn print_paired(name: &str, peer: &str, by_round: &[HashMap<&str, (f64, f64)>]) {
    let pairs: Vec<((f64, f64), (f64, f64))> = by_round
        .iter()
        .filter_map(|r| Some((*r.get(name)?, *r.get(peer)?)))
        .collect();
    if pairs.is_empty() {
        return;
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|((a, _), (b, _))| a / b * 100.0).collect();
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.0}")).collect();
    let p99_no_worse = pairs.iter().filter(|((_, a), (_, b))| a <= b).count();
    ratios.sort_by(f64::total_cmp);
    println!(
        "{name} / {peer}, round by round: requests/s {} % (median {:.0} %, ahead in {} of {}); p99 no worse in {p99_no_worse} of {}",
        listed.join(", "),
        ratios[ratios.len() / 2],
        ratios.iter().filter(|r| **r >= 100.0).count(),
        pairs.len(),
        pairs.len(),
    );
}

fn print_median(name: &str, ms: &[Measurement]) {
    let median = |f: fn(&Measurement) -> f64| {
        let mut v: Vec<f64> = ms.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rps: Vec<f64> = ms.iter().map(|m| m.rps).collect();
    let (lo, hi) = rps
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
    println!(
        "{name:<16} {:>10.0} {:>9} {:>9} {:>9} {:>6}        {:>5} {:>8} {:>5} {:>7}   {:>12.1}  [{lo:.0}–{hi:.0}]",
        median(|m| m.rps),
        micros(median(|m| m.p50)),
        micros(median(|m| m.p99)),
        micros(median(|m| m.p999)),
        ms.iter().map(|m| m.errors).sum::<u64>(),
        percent(median(|m| m.cpu_proxy)),
        percent(median(|m| m.cpu_backends)),
        percent(median(|m| m.cpu_wrk)),
        percent(median(|m| m.cpu_machine)),
        median(cpu_per_request),
    );
}

/// What limited a measurement: all CPUs busy (whoever used them), wrk's
/// threads each on a full core, or neither (then latency: the connections
/// wait on the network path).
fn bound_by(m: &Measurement) -> &'static str {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let wrk_threads = env_or("BENCH_THREADS", 1) as f64;
    if m.cpu_machine >= 0.95 * cpus {
        "CPU (machine saturated)"
    } else if m.cpu_wrk >= 0.95 * wrk_threads {
        "the loader (wrk)"
    } else {
        "latency"
    }
}

/// The proxy's CPU time per request, in microseconds: what it costs,
/// whatever else slowed the run down.
fn cpu_per_request(m: &Measurement) -> f64 {
    m.cpu_proxy * 1e6 / m.rps
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}µs")
    }
}

fn percent(cores: f64) -> String {
    format!("{:.0}%", cores * 100.0)
}

/// The child's side: a test control plane and a node with
/// `BENCH_NODE_WORKERS` worker threads, configured with one ALB listener forwarding to
/// one target group of `backends`; prints `ready` once applied, then serves
/// until killed.
fn run_node(backends: Vec<SocketAddr>) {
    // As `flotilla lb`: the node's own work on one thread, the listeners on
    // worker threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = env_or("BENCH_NODE_WORKERS", 2) as usize;
    rt.block_on(async {
        let cp = common::ControlPlane::start().await;
        let _node = common::start_node_tuned(&cp, &[FLOTILLA], |o| o.workers = workers);
        let targets = backends
            .iter()
            .map(|b| flotilla_model::lb::TargetConfig {
                id: b.ip().to_string(),
                address: b.ip(),
                port: b.port(),
                state: flotilla_model::lb::TargetState::Active,
                registered_at: 0.0,
            })
            .collect();
        let mut g = common::group(TG, targets);
        g.health_check.path = "/".into();
        g.health_check.interval_secs = 5;
        let listener = common::listener(FLOTILLA, PORT, vec![], common::forward(TG));
        cp.apply(1, common::config(vec![listener], vec![g])).await;
        println!("ready");
        // Until the parent kills this process (bounded anyway).
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
}

fn start_flotilla(backends: &[SocketAddr]) -> std::io::Result<Child> {
    use std::io::BufRead;
    let list: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    let mut child = Command::new(std::env::current_exe()?)
        .env("BENCH_NODE_FOR", list.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("the node did not start"));
    }
    Ok(child)
}

fn which(program: &str) -> Option<String> {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| format!("{d}/{program}"))
        .find(|p| Path::new(p).exists())
}

async fn connect_docker() -> Result<Docker, bollard::errors::Error> {
    let docker = Docker::connect_with_local_defaults()?;
    docker.negotiate_version().await
}

/// Builds the test image if needed and starts the two backend containers,
/// labelled `label`; returns their main processes' ids.
async fn start_backends(docker: &Docker, label: &str) -> Result<Vec<u32>, String> {
    flotilla_agent::testing::ensure_test_image(docker)
        .await
        .map_err(|e| e.to_string())?;
    let mut pids = Vec::new();
    for (i, ip) in BACKENDS.iter().enumerate() {
        let port = "8080/tcp".to_string();
        let body = ContainerCreateBody {
            image: Some(TEST_IMAGE.to_string()),
            cmd: Some(vec!["serve".into(), "8080".into()]),
            labels: Some(HashMap::from([(TEST_LABEL.to_string(), label.to_string())])),
            exposed_ports: Some(HashMap::from([(port.clone(), HashMap::new())])),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    port,
                    Some(vec![PortBinding {
                        host_ip: Some(ip.to_string()),
                        host_port: Some(BACKEND_PORT.to_string()),
                    }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(format!("{label}-backend-{i}")),
            ..Default::default()
        };
        let c = docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| e.to_string())?;
        docker
            .start_container(&c.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| e.to_string())?;
        let pid = docker
            .inspect_container(&c.id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| e.to_string())?
            .state
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or("the container has no process")?;
        pids.push(pid);
    }
    Ok(pids)
}

/// The docker-proxy processes forwarding the backends' published ports.
fn docker_proxy_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"docker-proxy"))
                && BACKENDS.iter().any(|ip| args.contains(&ip.as_bytes()))
                && args.contains(&BACKEND_PORT.to_string().as_bytes())
        })
        .collect()
}

fn start_nginx(nginx: &str, dir: &Path, backends: &[SocketAddr]) -> std::io::Result<Child> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = prefix.join("nginx.conf");
    let servers: String = backends.iter().map(|b| format!("server {b}; ")).collect();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
               upstream backend {{ {servers}keepalive 128; }}\n\
               server {{\n    listen {NGINX}:{PORT};\n    location / {{\n      proxy_pass http://backend;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
            p = prefix.display()
        ),
    )?;
    Command::new(nginx)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

fn start_haproxy(haproxy: &str, dir: &Path, backends: &[SocketAddr]) -> std::io::Result<Child> {
    let conf = dir.join("haproxy.cfg");
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("  server s{i} {b}\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 2\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\n\
             frontend fe\n  bind {HAPROXY}:{PORT}\n  default_backend be\n\
             backend be\n  balance roundrobin\n{servers}"
        ),
    )?;
    Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Polls `addr` until it answers 200 (at most 10 s).
fn wait_ready(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            if buf.starts_with(b"HTTP/1.1 200") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// wrk's `--latency` stops at p99: this prints the run's figures in
/// microseconds, p99.9 included.
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("bench %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"#;

/// One wrk run, with the CPU the proxy (`peer`'s process and its
/// children), the backends, wrk and the machine used meanwhile.
fn measure(
    wrk: &str,
    script: &Path,
    settings: &Settings,
    url: &str,
    peer: &Peer,
    backend_pids: &[u32],
) -> Option<Measurement> {
    let proxy_pids = peer.child.as_ref().map(|c| with_children(c.id()));
    let proxy_cpu = || proxy_pids.as_deref().map(cpu_ticks).unwrap_or(0);
    let before = (
        proxy_cpu(),
        cpu_ticks(backend_pids),
        waited_children_ticks(),
        machine_busy_ticks(),
        Instant::now(),
    );
    let out = run_wrk(wrk, script, settings, settings.seconds, url)?;
    let elapsed = before.4.elapsed().as_secs_f64();
    let share = |now: u64, then: u64| now.saturating_sub(then) as f64 / TICKS_PER_SEC / elapsed;
    let fields: Vec<f64> = out
        .lines()
        .find_map(|l| l.strip_prefix("bench "))?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [requests, duration_us, p50, p99, p999, socket_errors, status_errors] = fields[..] else {
        return None;
    };
    Some(Measurement {
        rps: requests / (duration_us / 1e6),
        p50,
        p99,
        p999,
        errors: (socket_errors + status_errors) as u64,
        cpu_proxy: share(proxy_cpu(), before.0),
        cpu_backends: share(cpu_ticks(backend_pids), before.1),
        cpu_wrk: share(waited_children_ticks(), before.2),
        cpu_machine: share(machine_busy_ticks(), before.3),
    })
}

fn run_wrk(wrk: &str, script: &Path, s: &Settings, seconds: u64, url: &str) -> Option<String> {
    let out = Command::new(wrk)
        .arg(format!("-t{}", s.threads))
        .arg(format!("-c{}", s.connections))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The fields of `/proc/PID/stat` after the command name.
fn stat_fields(pid: &str) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Vec::new();
    };
    let Some((_, rest)) = text.rsplit_once(')') else {
        return Vec::new();
    };
    // The state (a letter) parses as nothing: keep positions with 0.
    rest.split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// User and system CPU time of the processes (all their threads).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|p| {
            let f = stat_fields(&p.to_string());
            f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
        })
        .sum()
}

/// CPU time of this process's children that have been waited for (wrk).
fn waited_children_ticks() -> u64 {
    let f = stat_fields("self");
    f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0)
}

/// `pid` and its direct children (nginx's workers).
fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        pids.extend(
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| stat_fields(&p.to_string()).get(1) == Some(&u64::from(pid))),
        );
    }
    pids
}

/// CPU time the whole machine spent busy (everything but idle and iowait).
fn machine_busy_ticks() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = text.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}
