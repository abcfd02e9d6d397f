//! Log ingestion from one host's containers, end to end: containers on the
//! real Docker Engine write time-stamped lines with the awslogs driver; a
//! real `flotilla agent` process ships them to a real `flotilla server`
//! process (PutLogEvents over HTTP, SigV4, durable before answered); the
//! bench measures, while that runs:
//!
//! - **lines/s reaching the store**: the server's
//!   `flotilla_log_events_stored_total` (`GET /metrics`) sampled every
//!   250 ms; the sustained rate is taken between 5 % and 95 % of the lines;
//! - **write → searchable**, per line: every line is `SEQ MICROS x…`, MICROS
//!   the wall-clock time the container wrote it (`testprog stamp`). Each
//!   stream's newest event is polled with GetLogEvents (`limit` 1, newest
//!   first) every 20 ms; a line is searchable at the end of the first poll
//!   that returned it or a later line of its stream. An upper bound by up to
//!   one poll interval plus the call; `ingestionTime − MICROS` is printed
//!   beside it as the lower bound (when the store took the batch, before
//!   its commit);
//! - **the API's latency at the same time**: DescribeTasks, ListTasks,
//!   DescribeClusters and DescribeLogGroups, one after another, 10 ms apart;
//! - **CPU seconds** of the server, the agent, Docker (dockerd, containerd
//!   and the shims), this bench, and the whole machine, to say what bounds
//!   the figures.
//!
//! First, as the comparison any Docker log shipper starts from, the same
//! containers at the same rate with Docker's json-file driver and nothing
//! shipping: Docker's own CPU per line (what Fluent Bit tailing the
//! json-file would start from; neither Fluent Bit nor Vector is
//! installable here).
//!
//! After each phase every stream is read back from its head and checked:
//! sequence numbers 1…N, each once, in order.
//!
//! Two phases by default: paced at `FLOTILLA_BENCH_RATE` lines/s in all
//! (100,000, the goal) for `FLOTILLA_BENCH_SECONDS` (10), then as
//! fast as the containers can write for `FLOTILLA_BENCH_FLAT_SECONDS` (5;
//! 0 skips it). `FLOTILLA_BENCH_CONTAINERS` containers (4) in one task,
//! lines of `FLOTILLA_BENCH_BYTES` bytes (100). `FLOTILLA_BENCH_MODE`
//! `blocking` (default) or `non-blocking`.
//!
//! `cargo bench -p flotilla --bench logs_ingest`. Prints figures; asserts
//! nothing about time. Addresses 127.0.6.1 (server) and 127.0.6.2 (agent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_agent::spec::LABEL_CLUSTER;
use flotilla_agent::testing::{ensure_test_image_as, ContainerGuard};
use flotilla_client::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The bench's own tag of the test image (see `ensure_test_image_as`).
const IMAGE: &str = "flotilla-logsbench:latest";
const SERVER_IP: &str = "127.0.6.1";
const AGENT_IP: &str = "127.0.6.2";
const KEY: &str = "AKIABENCH00000000001";
const SECRET: &str = "bench-secret-key-0000000000000000000000";
const REGION: &str = "us-east-1";
const GROUP: &str = "/bench/logs";
const POLL: Duration = Duration::from_millis(20);
const PROBE_GAP: Duration = Duration::from_millis(10);

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- CPU time

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux this runs on.
    100.0
}

/// utime + stime of a process, seconds.
fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces) in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here 11 and 12.
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// CPU seconds by group of processes, by their command name.
fn cpu_by_group(server: u32, agent: u32) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    out.insert("server", proc_cpu(server));
    out.insert("agent", proc_cpu(agent));
    out.insert("bench", proc_cpu(std::process::id()));
    let mut docker = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if comm == "dockerd" || comm == "containerd" || comm.starts_with("containerd-shim") {
                docker += proc_cpu(pid);
            }
        }
    }
    out.insert("docker", docker);
    out.insert("machine", machine_busy());
    out
}

/// Busy CPU seconds of the whole machine since boot (all cores).
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 5 {
        return 0.0;
    }
    let total: f64 = f.iter().take(8).sum();
    (total - f[3] - f[4]) / clock_ticks()
}

// ---------------------------------------------------------------- setup

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .expect("bind 127.0.6.x")
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(listen: &str, data: &Path, credentials: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data)
            .arg("--credentials")
            .arg(credentials)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn flotilla server"),
    )
}

fn start_agent(endpoint: &str, cluster: &str, data: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["agent", "--endpoint", endpoint, "--cluster", cluster])
            .args(["--host-ip", AGENT_IP, "--metadata-port", "0", "--data-dir"])
            .arg(data)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("RUST_LOG", "warn")
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn flotilla agent"),
    )
}

async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `flotilla_log_events_stored_total` from `GET /metrics`.
async fn stored_total(addr: &str) -> Option<u64> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("flotilla_log_events_stored_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

// ---------------------------------------------------------------- a phase

struct Phase {
    label: String,
    /// awslogs (shipped by the agent), or json-file only.
    ship: bool,
    /// Lines a second over all containers (0: as fast as they can).
    rate: u64,
    seconds: u64,
}

#[derive(Default)]
struct Samples {
    /// (ms since the epoch, stored total)
    stored: Vec<(i64, u64)>,
    /// per stream: (ms since the epoch at the answer, newest SEQ)
    newest: BTreeMap<String, Vec<(i64, u64)>>,
    /// per operation: latencies in µs
    api: BTreeMap<&'static str, Vec<i64>>,
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn seq_of(message: &str) -> Option<(u64, i64)> {
    let mut parts = message.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let micros = parts.next()?.parse().ok()?;
    Some((seq, micros))
}

struct Ctx {
    ecs: Client,
    logs: Client,
    cluster: String,
    metrics_addr: String,
    containers: u64,
    bytes: u64,
    mode: String,
    server_pid: u32,
    agent_pid: u32,
}

impl Ctx {
    async fn call(&self, c: &Client, op: &str, body: Value) -> Value {
        c.call::<Value, Value>(op, &body)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    async fn run(&self, phase: &Phase) {
        let per_container = phase.rate / self.containers;
        let defs: Vec<Value> = (1..=self.containers)
            .map(|i| {
                if !phase.ship {
                    return json!({"name": format!("app{i}"), "image": IMAGE, "essential": true, "memory": 64,
                        "command": ["stamp", per_container.to_string(), phase.seconds.to_string(), self.bytes.to_string()],
                        "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "256m", "max-file": "4"}}});
                }
                json!({"name": format!("app{i}"), "image": IMAGE, "essential": true, "memory": 64,
                "command": ["stamp", per_container.to_string(), phase.seconds.to_string(), self.bytes.to_string()],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": GROUP, "awslogs-region": REGION, "awslogs-stream-prefix": "bench",
                    "awslogs-create-group": "true", "mode": self.mode, "max-buffer-size": "64m"}}})
            })
            .collect();
        let td = self
            .call(
                &self.ecs,
                "RegisterTaskDefinition",
                json!({"family": "logsbench", "containerDefinitions": defs}),
            )
            .await;
        let cpu0 = cpu_by_group(self.server_pid, self.agent_pid);
        let run = self
            .call(
                &self.ecs,
                "RunTask",
                json!({"cluster": self.cluster, "count": 1,
                    "taskDefinition": td["taskDefinition"]["taskDefinitionArn"]}),
            )
            .await;
        let task = run["tasks"][0]["taskArn"]
            .as_str()
            .unwrap_or_else(|| panic!("RunTask: {run}"))
            .to_string();
        let task_id = task.rsplit('/').next().unwrap().to_string();
        let streams: Vec<String> = (1..=self.containers)
            .map(|i| format!("bench/app{i}/{task_id}"))
            .collect();
        let started = now_ms();
        if !phase.ship {
            self.baseline(phase, &task, started, &cpu0).await;
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let mut jobs = Vec::new();

        // Lines stored, from the server's counter.
        {
            let (stop, samples, addr) = (stop.clone(), samples.clone(), self.metrics_addr.clone());
            jobs.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(n) = stored_total(&addr).await {
                        samples.lock().unwrap().stored.push((now_ms(), n));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }));
        }
        // Each stream's newest searchable line.
        for stream in &streams {
            let (stop, samples, logs, stream) = (
                stop.clone(),
                samples.clone(),
                self.logs.clone(),
                stream.clone(),
            );
            jobs.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let t0 = now_us();
                    let v = logs
                        .call::<Value, Value>(
                            "GetLogEvents",
                            &json!({"logGroupName": GROUP, "logStreamName": stream, "limit": 1}),
                        )
                        .await;
                    let t1 = now_us();
                    if let Ok(v) = v {
                        let newest = v["events"]
                            .as_array()
                            .and_then(|e| e.last())
                            .and_then(|e| e["message"].as_str())
                            .and_then(seq_of);
                        let mut s = samples.lock().unwrap();
                        s.api
                            .entry("GetLogEvents(newest)")
                            .or_default()
                            .push(t1 - t0);
                        if let Some((seq, _)) = newest {
                            s.newest
                                .entry(stream.clone())
                                .or_default()
                                .push((t1 / 1000, seq));
                        }
                    }
                    tokio::time::sleep(POLL).await;
                }
            }));
        }
        // The control plane's API at the same time.
        {
            let (stop, samples, ecs, logs, cluster, task) = (
                stop.clone(),
                samples.clone(),
                self.ecs.clone(),
                self.logs.clone(),
                self.cluster.clone(),
                task.clone(),
            );
            jobs.push(tokio::spawn(async move {
                let probes: [(&'static str, bool, Value); 4] = [
                    (
                        "DescribeTasks",
                        true,
                        json!({"cluster": cluster, "tasks": [task]}),
                    ),
                    ("ListTasks", true, json!({"cluster": cluster})),
                    ("DescribeClusters", true, json!({"clusters": [cluster]})),
                    (
                        "DescribeLogGroups",
                        false,
                        json!({"logGroupNamePrefix": "/bench"}),
                    ),
                ];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (op, is_ecs, body) = &probes[i % probes.len()];
                    i += 1;
                    let c = if *is_ecs { &ecs } else { &logs };
                    let t0 = Instant::now();
                    let ok = c.call::<Value, Value>(op, body).await.is_ok();
                    let us = t0.elapsed().as_micros() as i64;
                    if ok {
                        samples.lock().unwrap().api.entry(op).or_default().push(us);
                    }
                    tokio::time::sleep(PROBE_GAP).await;
                }
            }));
        }

        // Until the task has stopped and the stored count stands still.
        let limit = Duration::from_secs(phase.seconds * 20 + 120);
        let t_start = Instant::now();
        wait_until("the task to stop", limit, || async {
            let v = self
                .ecs
                .call::<Value, Value>(
                    "DescribeTasks",
                    &json!({"cluster": self.cluster, "tasks": [task]}),
                )
                .await
                .ok()?;
            (v["tasks"][0]["lastStatus"] == "STOPPED").then_some(())
        })
        .await;
        let mut last = (Instant::now(), stored_total(&self.metrics_addr).await);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let n = stored_total(&self.metrics_addr).await;
            if n != last.1 {
                last = (Instant::now(), n);
            } else if last.0.elapsed() > Duration::from_secs(3) {
                break;
            }
            assert!(t_start.elapsed() < limit, "ingestion did not settle");
        }
        // The pollers must have seen each stream's last line.
        tokio::time::sleep(POLL * 3).await;
        stop.store(true, Ordering::Relaxed);
        for j in jobs {
            let _ = j.await;
        }
        let cpu1 = cpu_by_group(self.server_pid, self.agent_pid);
        let samples = Arc::try_unwrap(samples).ok().unwrap().into_inner().unwrap();
        self.report(phase, &streams, started, &samples, &cpu0, &cpu1)
            .await;
    }

    /// Docker alone: the containers log to json-file, nothing ships.
    async fn baseline(
        &self,
        phase: &Phase,
        task: &str,
        started: i64,
        cpu0: &BTreeMap<&'static str, f64>,
    ) {
        wait_until(
            "the task to stop",
            Duration::from_secs(phase.seconds * 20 + 120),
            || async {
                let v = self
                    .ecs
                    .call::<Value, Value>(
                        "DescribeTasks",
                        &json!({"cluster": self.cluster, "tasks": [task]}),
                    )
                    .await
                    .ok()?;
                (v["tasks"][0]["lastStatus"] == "STOPPED").then_some(())
            },
        )
        .await;
        let cpu1 = cpu_by_group(self.server_pid, self.agent_pid);
        let lines = (phase.rate * phase.seconds) as f64;
        let d = |k: &str| cpu1.get(k).copied().unwrap_or(0.0) - cpu0.get(k).copied().unwrap_or(0.0);
        println!("\n== {} ==", phase.label);
        println!(
            "{} containers, {} lines/s in all for {} s ({lines:.0} lines), json-file, nothing shipped: done in {:.1} s; Docker {:.1} CPU s = {:.1} µs per line; machine {:.1} of {:.0} CPU s",
            self.containers,
            phase.rate,
            phase.seconds,
            (now_ms() - started) as f64 / 1000.0,
            d("docker"),
            d("docker") * 1e6 / lines.max(1.0),
            d("machine"),
            2.0 * (now_ms() - started) as f64 / 1000.0,
        );
    }

    /// Every event of a stream: (seq, write µs, ingestionTime ms).
    async fn read_back(&self, stream: &str) -> Vec<(u64, i64, i64)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = json!({"logGroupName": GROUP, "logStreamName": stream,
                "startFromHead": true, "limit": 10000});
            if let Some(t) = &token {
                req["nextToken"] = json!(t);
            }
            let v = self.call(&self.logs, "GetLogEvents", req).await;
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let next = v["nextForwardToken"].as_str().unwrap_or("").to_string();
            if events.is_empty() || token.as_deref() == Some(next.as_str()) {
                return out;
            }
            for e in &events {
                let m = e["message"].as_str().unwrap_or("");
                let (seq, us) = seq_of(m).unwrap_or((0, 0));
                out.push((seq, us, e["ingestionTime"].as_i64().unwrap_or(0)));
            }
            token = Some(next);
        }
    }

    async fn report(
        &self,
        phase: &Phase,
        streams: &[String],
        started: i64,
        s: &Samples,
        cpu0: &BTreeMap<&'static str, f64>,
        cpu1: &BTreeMap<&'static str, f64>,
    ) {
        let mut searchable: Vec<i64> = Vec::new();
        let mut ingested: Vec<i64> = Vec::new();
        let (mut total, mut bad, mut unseen) = (0usize, 0usize, 0usize);
        let mut first_write = i64::MAX;
        for stream in streams {
            let events = self.read_back(stream).await;
            total += events.len();
            let polls = s.newest.get(stream).cloned().unwrap_or_default();
            let mut p = 0;
            for (i, (seq, us, ingestion)) in events.iter().enumerate() {
                if *seq != i as u64 + 1 {
                    bad += 1;
                }
                first_write = first_write.min(us / 1000);
                ingested.push(ingestion * 1000 - us);
                while p < polls.len() && polls[p].1 < *seq {
                    p += 1;
                }
                match polls.get(p) {
                    Some((t, _)) => searchable.push(t * 1000 - us),
                    None => unseen += 1,
                }
            }
        }
        searchable.sort_unstable();
        ingested.sort_unstable();
        let ms = |v: i64| v as f64 / 1000.0;

        // Sustained rate: between 5 % and 95 % of the lines stored.
        let base = s.stored.first().map_or(0, |x| x.1);
        let done = s.stored.last().map_or(0, |x| x.1) - base;
        let at = |frac: f64| {
            s.stored
                .iter()
                .find(|(_, n)| (n - base) as f64 >= frac * done as f64)
                .map(|(t, n)| (*t, n - base))
        };
        let sustained = match (at(0.05), at(0.95)) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 * 1000.0 / (t1 - t0) as f64
            }
            _ => 0.0,
        };
        let peak = s
            .stored
            .windows(5)
            .map(|w| (w[4].1 - w[0].1) as f64 * 1000.0 / (w[4].0 - w[0].0).max(1) as f64)
            .fold(0.0, f64::max);
        let all_stored_at = s
            .stored
            .iter()
            .find(|(_, n)| n - base >= done)
            .map_or(0, |x| x.0);
        let span = (all_stored_at - first_write.min(started)).max(1) as f64 / 1000.0;

        println!("\n== {} ==", phase.label);
        println!(
            "offered: {} containers, {} for {} s, {}-byte lines, mode {}",
            self.containers,
            if phase.rate == 0 {
                "as fast as they can write".to_string()
            } else {
                format!("{} lines/s in all", phase.rate)
            },
            phase.seconds,
            self.bytes,
            self.mode
        );
        println!(
            "stored: {total} lines ({} by the server's counter); sequence check: {}",
            done,
            if bad == 0 {
                "every line once, in order".to_string()
            } else {
                format!("{bad} lines out of place, missing or repeated")
            }
        );
        println!(
            "ingest: sustained {:.0} lines/s (5–95 % of the lines), peak {:.0} lines/s over 1 s, {:.0} lines/s from the first write to the last line stored ({span:.1} s)",
            sustained,
            peak,
            total as f64 / span
        );
        println!(
            "write → searchable (GetLogEvents sees it; ≤ {} ms poll + call): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
            POLL.as_millis(),
            ms(pct(&searchable, 0.5)),
            ms(pct(&searchable, 0.99)),
            ms(*searchable.last().unwrap_or(&0)),
            if unseen > 0 {
                format!(" ({unseen} lines never seen by a poll)")
            } else {
                String::new()
            }
        );
        println!(
            "write → ingestionTime (the store took it; lower bound): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(pct(&ingested, 0.5)),
            ms(pct(&ingested, 0.99)),
            ms(*ingested.last().unwrap_or(&0)),
        );
        let mut all_api: Vec<i64> = Vec::new();
        for (op, v) in &s.api {
            let mut v = v.clone();
            v.sort_unstable();
            if *op != "GetLogEvents(newest)" {
                all_api.extend(&v);
            }
            println!(
                "API {op:>22}: {:>6} calls, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                v.len(),
                ms(pct(&v, 0.5)),
                ms(pct(&v, 0.99)),
                ms(*v.last().unwrap_or(&0))
            );
        }
        all_api.sort_unstable();
        println!(
            "API probes in all (ECS + DescribeLogGroups): p50 {:.2} ms, p99 {:.2} ms",
            ms(pct(&all_api, 0.5)),
            ms(pct(&all_api, 0.99))
        );
        let wall = (now_ms() - started) as f64 / 1000.0;
        let cpu: Vec<String> = cpu1
            .iter()
            .map(|(k, v1)| {
                let d = v1 - cpu0.get(k).copied().unwrap_or(0.0);
                format!("{k} {d:.1} s")
            })
            .collect();
        println!(
            "CPU seconds over the phase's {wall:.1} s (2 cores = {:.0} s): {}",
            2.0 * wall,
            cpu.join(", ")
        );
        let per_line = |k: &str| {
            let d = cpu1.get(k).copied().unwrap_or(0.0) - cpu0.get(k).copied().unwrap_or(0.0);
            d * 1e6 / total.max(1) as f64
        };
        println!(
            "CPU µs per line: server {:.1}, agent {:.1}, docker {:.1} (all three {:.1}: {:.0} lines/s per core)",
            per_line("server"),
            per_line("agent"),
            per_line("docker"),
            per_line("server") + per_line("agent") + per_line("docker"),
            1e6 / (per_line("server") + per_line("agent") + per_line("docker")).max(0.001)
        );
    }
}

fn main() {
    let rate = knob("FLOTILLA_BENCH_RATE", 100_000);
    let seconds = knob("FLOTILLA_BENCH_SECONDS", 10);
    let flat_seconds = knob("FLOTILLA_BENCH_FLAT_SECONDS", 5);
    let containers = knob("FLOTILLA_BENCH_CONTAINERS", 4).max(1);
    let bytes = knob("FLOTILLA_BENCH_BYTES", 100).max(40);
    let mode = std::env::var("FLOTILLA_BENCH_MODE").unwrap_or_else(|_| "blocking".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let docker = bollard::Docker::connect_with_local_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .expect("docker");
        ensure_test_image_as(&docker, IMAGE).await.expect("image");
        let cluster = format!("logsbench-{}", std::process::id());
        let _guard = ContainerGuard::new(&docker, LABEL_CLUSTER, &cluster).await;
        let dir = tempfile::tempdir().unwrap();
        let credentials: PathBuf = dir.path().join("credentials.toml");
        std::fs::write(
            &credentials,
            format!("[[principal]]\nname = \"bench\"\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\naccount_id = \"123456789012\"\n"),
        )
        .unwrap();
        let listen = format!("{SERVER_IP}:{}", free_port(SERVER_IP));
        let endpoint = format!("http://{listen}");
        let server = start_server(&listen, &dir.path().join("server"), &credentials);
        let ecs = Client::ecs(&endpoint, KEY, SECRET, REGION);
        let logs = ecs.for_service("logs", "Logs_20140328");
        wait_until("the server", Duration::from_secs(60), || async {
            ecs.call::<Value, Value>("ListClusters", &json!({})).await.ok()
        })
        .await;
        ecs.call::<Value, Value>("CreateCluster", &json!({"clusterName": cluster}))
            .await
            .expect("CreateCluster");
        let agent = start_agent(&endpoint, &cluster, &dir.path().join("agent"));
        wait_until("the agent to connect", Duration::from_secs(60), || async {
            let v = ecs
                .call::<Value, Value>("ListContainerInstances", &json!({"cluster": cluster}))
                .await
                .ok()?;
            let arn = v["containerInstanceArns"].as_array()?.first()?.clone();
            let d = ecs
                .call::<Value, Value>(
                    "DescribeContainerInstances",
                    &json!({"cluster": cluster, "containerInstances": [arn]}),
                )
                .await
                .ok()?;
            (d["containerInstances"][0]["agentConnected"] == true).then_some(())
        })
        .await;
        let ctx = Ctx {
            ecs,
            logs,
            cluster,
            metrics_addr: listen.clone(),
            containers,
            bytes,
            mode,
            server_pid: server.0.id(),
            agent_pid: agent.0.id(),
        };
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "logs_ingest: one agent, one server, {} cores; load average before: {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        if knob("FLOTILLA_BENCH_BASELINE", 1) == 1 {
            ctx.run(&Phase {
                label: format!("Docker alone (json-file, no shipping) at {rate} lines/s"),
                ship: false,
                rate,
                seconds,
            })
            .await;
        }
        ctx.run(&Phase {
            label: format!("paced at {rate} lines/s"),
            ship: true,
            rate,
            seconds,
        })
        .await;
        if flat_seconds > 0 {
            ctx.run(&Phase {
                label: "flat out".into(),
                ship: true,
                rate: 0,
                seconds: flat_seconds,
            })
            .await;
        }
        drop(agent);
        drop(server);
    });
}
