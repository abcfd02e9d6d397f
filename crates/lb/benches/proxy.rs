//! `cargo bench -p flotilla-lb --bench proxy`: requests/s and latency
//! through Flotilla's ALB listener, nginx and HAProxy, each a reverse proxy
//! with keep-alive connections to the SAME backend (an in-process hyper
//! server answering `ok`), loaded by the same wrk with the same connection
//! count for the same bounded time. A peer that is not installed is
//! skipped, and the run says so.
//!
//! Settings (environment): `BENCH_CONNECTIONS` (default 32),
//! `BENCH_SECONDS` per run (default 10; a 2 s warm-up precedes each),
//! `BENCH_THREADS` for wrk (default 1), `BENCH_ONLY=flotilla,nginx` to
//! measure some of them, `BENCH_NODE_THREADS` for Flotilla's runtime.
//!
//! What bounds the figures: everything shares one machine (2 cores here):
//! wrk, the proxy under test and the backend compete for the same CPUs, so
//! the numbers compare the proxies' CPU cost per request more than they
//! measure any proxy's ceiling. Each proxy gets two workers (nginx
//! `worker_processes 2`, HAProxy `nbthread 2`, Flotilla a 2-thread tokio
//! runtime in a child process); the backend has its own 1-thread runtime in
//! this process.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// As in the `flotilla` binary, whose node this measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BACKEND: &str = "127.0.0.60";
const FLOTILLA: &str = "127.0.0.61";
const NGINX: &str = "127.0.0.62";
const HAPROXY: &str = "127.0.0.63";
const PORT: u16 = 8080;
const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bench/1";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // The Flotilla node runs in a child process of its own (this program
    // again), as nginx and HAProxy do, so no proxy shares a process with
    // the backend.
    if let Ok(backend) = std::env::var("BENCH_NODE_FOR") {
        return run_node(backend.parse().expect("a backend address"));
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    let connections = env_or("BENCH_CONNECTIONS", 32);
    let seconds = env_or("BENCH_SECONDS", 10);
    let threads = env_or("BENCH_THREADS", 1);
    let Some(wrk) = which("wrk") else {
        println!("wrk is not installed (apt-get install wrk): nothing to measure with; skipping the benchmark");
        return;
    };

    let backend_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let backend = backend_rt.block_on(start_backend());

    let dir = std::env::temp_dir().join(format!("flotilla-lb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut peers: Vec<(&str, String, Option<Child>)> = Vec::new();
    peers.push(("backend direct", format!("http://{backend}/"), None));
    match start_flotilla(backend) {
        Ok(child) => peers.push((
            "flotilla",
            format!("http://{FLOTILLA}:{PORT}/"),
            Some(child),
        )),
        Err(e) => println!("flotilla: cannot start its node ({e}); skipped"),
    }
    match which("nginx") {
        Some(nginx) => match start_nginx(&nginx, &dir, backend) {
            Ok(child) => peers.push(("nginx", format!("http://{NGINX}:{PORT}/"), Some(child))),
            Err(e) => println!("nginx: cannot start it ({e}); skipped"),
        },
        None => println!("nginx is not installed (apt-get install nginx-light); skipped"),
    }
    match which("haproxy") {
        Some(haproxy) => match start_haproxy(&haproxy, &dir, backend) {
            Ok(child) => peers.push(("haproxy", format!("http://{HAPROXY}:{PORT}/"), Some(child))),
            Err(e) => println!("haproxy: cannot start it ({e}); skipped"),
        },
        None => println!("haproxy is not installed (apt-get install haproxy); skipped"),
    }

    println!(
        "wrk -t{threads} -c{connections} -d{seconds}s, after a 2 s warm-up; backend: in-process hyper on {backend}; {} CPUs shared by loader, proxy and backend",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "{:<16} {:>12} {:>10} {:>10} {:>8}",
        "proxy", "requests/s", "p50", "p99", "errors"
    );
    let only = std::env::var("BENCH_ONLY").ok();
    for (name, url, _) in &peers {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|n| n == *name))
        {
            continue;
        }
        if !wait_ready(url) {
            println!("{name:<16} not answering at {url}; skipped");
            continue;
        }
        let conns_before = BACKEND_CONNECTIONS.load(std::sync::atomic::Ordering::Relaxed);
        let _ = run_wrk(&wrk, threads, connections, 2, url);
        match run_wrk(&wrk, threads, connections, seconds, url) {
            Some(r) => println!(
                "{name:<16} {:>12.0} {:>10} {:>10} {:>8} {:>18}",
                r.rps,
                r.p50,
                r.p99,
                r.errors,
                BACKEND_CONNECTIONS.load(std::sync::atomic::Ordering::Relaxed) - conns_before
            ),
            None => println!("{name:<16} wrk failed"),
        }
    }
    for (_, _, child) in peers.iter_mut() {
        if let Some(c) = child {
            // SIGTERM, so nginx's master takes its workers down with it
            // (SIGKILL would leave them holding the port).
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child's side: a test control plane and a node on a 2-thread runtime
/// (`BENCH_NODE_THREADS`), configured with one ALB listener forwarding to
/// `backend`; prints `ready` once applied, then serves until killed.
fn run_node(backend: SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("BENCH_NODE_THREADS", 2) as usize)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cp = common::ControlPlane::start().await;
        let _node = common::start_node(&cp, &[FLOTILLA]);
        let target = flotilla_model::lb::TargetConfig {
            id: BACKEND.into(),
            address: backend.ip(),
            port: backend.port(),
            state: flotilla_model::lb::TargetState::Active,
            registered_at: 0.0,
        };
        let mut g = common::group(TG, vec![target]);
        g.health_check.path = "/".into();
        g.health_check.interval_secs = 5;
        let listener = common::listener(FLOTILLA, PORT, vec![], common::forward(TG));
        cp.apply(1, common::config(vec![listener], vec![g])).await;
        println!("ready");
        // Until the parent kills this process (bounded anyway).
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
}

fn start_flotilla(backend: SocketAddr) -> std::io::Result<Child> {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe()?)
        .env("BENCH_NODE_FOR", backend.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
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

/// Connections the backend accepted (a proxy that reuses its upstream
/// connections opens few).
static BACKEND_CONNECTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn start_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((BACKEND, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            BACKEND_CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn start_nginx(nginx: &str, dir: &Path, backend: SocketAddr) -> std::io::Result<Child> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
               upstream backend {{ server {backend}; keepalive 128; }}\n\
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

fn start_haproxy(haproxy: &str, dir: &Path, backend: SocketAddr) -> std::io::Result<Child> {
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 2\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\n\
             frontend fe\n  bind {HAPROXY}:{PORT}\n  default_backend be\n\
             backend be\n  server s1 {backend}\n"
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

/// Polls `url` until it answers 200 (at most 10 s).
fn wait_ready(url: &str) -> bool {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
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

struct WrkResult {
    rps: f64,
    p50: String,
    p99: String,
    errors: u64,
}

fn run_wrk(
    wrk: &str,
    threads: u64,
    connections: u64,
    seconds: u64,
    url: &str,
) -> Option<WrkResult> {
    let out = Command::new(wrk)
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--latency".to_string(),
            url.to_string(),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = None;
    let (mut p50, mut p99) = (String::new(), String::new());
    let mut errors = 0;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // connect N, read N, write N, timeout N
            errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(WrkResult {
        rps: rps?,
        p50,
        p99,
        errors,
    })
}
