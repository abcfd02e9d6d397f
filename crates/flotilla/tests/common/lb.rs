//! Load-balancer helpers shared by the end-to-end tests: the real AWS CLI,
//! a load-balancer node in-process (as `flotilla dev` runs one), a plain
//! HTTP/1.1 keep-alive client, and the test image serving on a dynamic host
//! port.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_agent::testing::TEST_IMAGE;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{wait_for, Env, KEY, REGION, SECRET};

/// `aws SERVICE ARGS… --output json`: (succeeded, stdout as JSON, stderr).
pub async fn aws_result(env: &Env, service: &str, args: &[&str]) -> (bool, Value, String) {
    let aws = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
    let out = tokio::process::Command::new(aws)
        .arg(service)
        .args(args)
        .args([
            "--output",
            "json",
            "--endpoint-url",
            &env.endpoint,
            "--region",
            REGION,
        ])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .output()
        .await
        .expect("the AWS CLI must be installed: run the tests with scripts/test");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `aws SERVICE ARGS… --output json`; panics on failure.
pub async fn aws(env: &Env, service: &str, args: &[&str]) -> Value {
    let (ok, out, err) = aws_result(env, service, args).await;
    assert!(ok, "aws {service} {args:?}: {err}");
    out
}

/// `aws SERVICE ARGS…` that must fail with the error `code`; its stderr.
pub async fn aws_fails(env: &Env, service: &str, args: &[&str], code: &str) -> String {
    let (ok, out, err) = aws_result(env, service, args).await;
    assert!(!ok, "aws {service} {args:?} should fail with {code}: {out}");
    assert!(
        err.contains(&format!("({code})")),
        "aws {service} {args:?}: expected {code}, got: {err}"
    );
    err
}

pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// Health checks every 5 s (ELBv2's minimum), 2 passes to turn healthy, 2
/// failures to turn unhealthy.
pub const FAST_CHECKS: [&str; 8] = [
    "--health-check-interval-seconds",
    "5",
    "--health-check-timeout-seconds",
    "2",
    "--healthy-threshold-count",
    "2",
    "--unhealthy-threshold-count",
    "2",
];

/// An HTTP `instance` target group on port 8080 with [`FAST_CHECKS`] and a
/// 5 s deregistration delay, as the rollout tests want it: its ARN.
pub async fn http_target_group(env: &Env, name: &str) -> String {
    let mut args = vec![
        "create-target-group",
        "--name",
        name,
        "--protocol",
        "HTTP",
        "--port",
        "8080",
        "--vpc-id",
        "vpc-1",
        "--target-type",
        "instance",
    ];
    args.extend(FAST_CHECKS);
    let tg = aws(env, "elbv2", &args).await;
    let arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]);
    aws(
        env,
        "elbv2",
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=5",
        ],
    )
    .await;
    arn
}

/// `aws elbv2 describe-target-health`: the descriptions.
pub async fn target_health(env: &Env, tg: &str) -> Vec<Value> {
    let v = aws(
        env,
        "elbv2",
        &["describe-target-health", "--target-group-arn", tg],
    )
    .await;
    v["TargetHealthDescriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `create-target-group NAME` with fast checks; its ARN.
pub async fn target_group(env: &Env, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["create-target-group", "--name", name];
    args.extend(FAST_CHECKS);
    args.extend(extra);
    let tg = aws(env, "elbv2", &args).await;
    s(&tg["TargetGroups"][0]["TargetGroupArn"])
}

/// `create-load-balancer`, waited for; (ARN, DNSName).
pub async fn load_balancer(env: &Env, name: &str, kind: &str) -> (String, String) {
    let lb = aws(
        env,
        "elbv2",
        &[
            "create-load-balancer",
            "--name",
            name,
            "--type",
            kind,
            "--subnets",
            "subnet-1",
        ],
    )
    .await;
    let arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
    // Polled rather than `aws elbv2 wait load-balancer-available` (tested in
    // lb_e2e.rs), whose 15 s delay would be most of the wait.
    let d = wait_for(
        &format!("load balancer {name} active"),
        Duration::from_secs(30),
        || async {
            let d = aws(
                env,
                "elbv2",
                &["describe-load-balancers", "--load-balancer-arns", &arn],
            )
            .await;
            (d["LoadBalancers"][0]["State"]["Code"] == "active").then_some(d)
        },
    )
    .await;
    (arn, s(&d["LoadBalancers"][0]["DNSName"]))
}

/// A listener on `port` of load balancer `lb` (`protocol` HTTP or TCP)
/// forwarding to target group `tg`; its ARN.
pub async fn forward_listener(env: &Env, lb: &str, protocol: &str, port: u16, tg: &str) -> String {
    let listener = aws(
        env,
        "elbv2",
        &[
            "create-listener",
            "--load-balancer-arn",
            lb,
            "--protocol",
            protocol,
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
        ],
    )
    .await;
    s(&listener["Listeners"][0]["ListenerArn"])
}

pub async fn rule(env: &Env, listener: &str, priority: u32, conditions: &str, actions: Value) {
    aws(
        env,
        "elbv2",
        &[
            "create-rule",
            "--listener-arn",
            listener,
            "--priority",
            &priority.to_string(),
            "--conditions",
            conditions,
            "--actions",
            &actions.to_string(),
        ],
    )
    .await;
}

/// One container of the test image answering `BODY` on 8080 (`/env`,
/// `/status/N` and `/slow/MS` too), on a dynamic host port.
pub fn serving(body: &str) -> Value {
    json!([{
        "name": "app",
        "image": TEST_IMAGE,
        "command": ["serve", "8080", body],
        "memory": 32,
        "cpu": 16,
        "essential": true,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
    }])
}

/// A real load-balancer node (`flotilla_lb`) in-process, as `flotilla dev`
/// runs one, on `addresses`.
pub struct LbNode {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LbNode {
    pub fn start(env: &Env, name: &str, addresses: &[IpAddr]) -> LbNode {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let gateway = flotilla_lb::GatewayConfig::new(env.client.clone(), name, addresses.to_vec());
        let task = tokio::spawn(flotilla_lb::run(
            flotilla_lb::NodeOptions::new(gateway),
            async {
                let _ = rx.await;
            },
        ));
        LbNode {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the node (its listeners close).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for LbNode {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// `create-service` behind `tg`, spread over the instances.
pub async fn service(env: &Env, name: &str, td: &str, count: u32, tg: &str) {
    let lbs = format!("targetGroupArn={tg},containerName=app,containerPort=8080");
    let extra = [
        "--placement-strategy",
        "type=spread,field=instanceId",
        "--health-check-grace-period-seconds",
        "0",
    ];
    create_service(env, name, td, count, &lbs, &extra).await;
}

/// `create-service NAME` of `count` tasks of `td` in the cluster, behind
/// the `--load-balancers` value `lbs`, with `extra` arguments after.
pub async fn create_service(
    env: &Env,
    name: &str,
    td: &str,
    count: u32,
    lbs: &str,
    extra: &[&str],
) {
    let count = count.to_string();
    let mut args = vec![
        "create-service",
        "--cluster",
        &env.cluster,
        "--service-name",
        name,
        "--task-definition",
        td,
        "--desired-count",
        &count,
        "--load-balancers",
        lbs,
    ];
    args.extend_from_slice(extra);
    aws(env, "ecs", &args).await;
}

/// The service's tasks (any status ListTasks gives: running ones).
pub async fn tasks_of(env: &Env, service: &str) -> Vec<Value> {
    let l = env
        .call(
            "ListTasks",
            json!({"cluster": env.cluster, "serviceName": service}),
        )
        .await;
    let arns = l["taskArns"].as_array().cloned().unwrap_or_default();
    if arns.is_empty() {
        return vec![];
    }
    let d = env
        .call(
            "DescribeTasks",
            json!({"cluster": env.cluster, "tasks": arns}),
        )
        .await;
    d["tasks"].as_array().cloned().unwrap_or_default()
}

/// Waits until the group has `n` targets, all healthy.
pub async fn healthy_targets(env: &Env, tg: &str, n: usize, what: &str) -> Vec<Value> {
    wait_for(what, Duration::from_secs(60), || async {
        let t = target_health(env, tg).await;
        (t.len() == n && t.iter().all(|d| d["TargetHealth"]["State"] == "healthy")).then_some(t)
    })
    .await
}

/// The short container ids (the containers' `HOSTNAME`) of a service's
/// running tasks.
pub async fn hostnames(env: &Env, service: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in tasks_of(env, service).await {
        for c in env.containers_of(&s(&t["taskArn"])).await {
            out.insert(c.id.unwrap_or_default()[..12].to_string());
        }
    }
    out
}

/// `GET PATH` with `Host: HOST` until `n` answers; the `HOSTNAME` each
/// `/env` answer names.
pub async fn hostnames_answering(conn: &mut Conn, host: &str, path: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (status, body) = conn.get_path(host, path).await.expect("GET /env");
        assert_eq!(status, 200, "{body}");
        let hostname = body
            .lines()
            .find_map(|l| l.strip_prefix("HOSTNAME="))
            .unwrap_or_else(|| panic!("no HOSTNAME in {body}"));
        out.push(hostname.to_string());
    }
    out
}

/// A target as DescribeTargetHealth names it: (id, port).
pub type TargetKey = (String, i64);

/// The (id, port) of each of `descriptions`.
pub fn target_keys(descriptions: &[Value]) -> BTreeSet<TargetKey> {
    descriptions
        .iter()
        .map(|d| {
            (
                s(&d["Target"]["Id"]),
                d["Target"]["Port"].as_i64().expect("port"),
            )
        })
        .collect()
}

/// The target an ECS task of [`serving`] is behind an `instance` target
/// group as: its container instance's id and its dynamic host port.
pub fn task_target(task: &Value) -> TargetKey {
    let instance = s(&task["containerInstanceArn"]);
    let id = instance.rsplit('/').next().unwrap().to_string();
    let port = task["containers"][0]["networkBindings"][0]["hostPort"]
        .as_i64()
        .unwrap_or_else(|| panic!("no host port: {task}"));
    (id, port)
}

/// The `HOSTNAME` a `/env` answer names (the container's short id).
pub fn hostname(env_body: &str) -> Option<&str> {
    env_body.lines().find_map(|l| l.strip_prefix("HOSTNAME="))
}

/// `flotilla lb` as a child process (SIGKILLed when dropped), named `name`,
/// on `addresses`.
pub struct LbProcess {
    pub child: Child,
}

impl LbProcess {
    pub fn start(env: &Env, name: &str, addresses: &[IpAddr]) -> LbProcess {
        let addresses: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["lb", "--endpoint", &env.endpoint, "--name", name])
            .args(["--address", &addresses.join(",")])
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", REGION)
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn flotilla lb");
        LbProcess { child }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LbProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// An answer: status, headers (names lower-case) and body (trimmed).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 keep-alive connection to a load balancer.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub async fn open(addr: &str) -> std::io::Result<Conn> {
        Conn::ready(TcpStream::connect(addr).await?)
    }

    /// A connection from the loopback address `source` (for `source-ip`
    /// conditions).
    pub async fn open_from(addr: &str, source: IpAddr) -> std::io::Result<Conn> {
        let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((source, 0).into())?;
        Conn::ready(socket.connect(addr).await?)
    }

    fn ready(stream: TcpStream) -> std::io::Result<Conn> {
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    /// `GET /`: the status and the body.
    pub async fn get(&mut self, host: &str) -> std::io::Result<(u16, String)> {
        self.get_path(host, "/").await
    }

    /// `GET PATH`: the status and the body.
    pub async fn get_path(&mut self, host: &str, path: &str) -> std::io::Result<(u16, String)> {
        let r = self.request(host, path).await?;
        Ok((r.status, r.body))
    }

    /// `GET PATH` with `Host: HOST`; an error when the load balancer closes
    /// the connection.
    pub async fn request(&mut self, host: &str, path: &str) -> std::io::Result<Reply> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-e2e\r\n\r\n");
        self.send(&req).await
    }

    /// Sends `request` (a whole HTTP/1.1 request, head and body) and reads
    /// the answer; an error when the load balancer closes the connection.
    pub async fn send(&mut self, request: &str) -> std::io::Result<Reply> {
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the status line",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the headers",
                ));
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
            match name.as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
            headers.push((name, value));
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.stream.read_exact(&mut body).await?;
        } else {
            self.stream.read_to_end(&mut body).await?;
            close = true;
        }
        if close {
            return Err(std::io::Error::other(format!(
                "the load balancer closed the connection after a {status}"
            )));
        }
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        })
    }
}

/// One request of [`load`]: when (seconds since the loader started), and
/// its answer (status and body) or the error.
pub type Outcome = (f64, Result<(u16, String), String>);

/// A bounded loader: `connections` keep-alive connections sending `GET
/// PATH` one after the other, `pause` apart, until `stop`, `limit` or
/// `max_requests` in all. The outcomes sorted by time.
#[allow(clippy::too_many_arguments)] // each bound is its own knob
pub async fn load(
    addr: String,
    host: String,
    path: &'static str,
    connections: usize,
    pause: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
    max_requests: usize,
) -> Vec<Outcome> {
    use std::sync::atomic::Ordering;
    let start = std::time::Instant::now();
    let per_conn = max_requests / connections.max(1);
    let mut handles = Vec::new();
    for _ in 0..connections {
        let (addr, host, stop) = (addr.clone(), host.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < limit && out.len() < per_conn {
                let result = async {
                    if conn.is_none() {
                        conn = Some(Conn::open(&addr).await?);
                    }
                    conn.as_mut().unwrap().get_path(&host, path).await
                }
                .await
                .map_err(|e| {
                    conn = None;
                    e.to_string()
                });
                out.push((start.elapsed().as_secs_f64(), result));
                tokio::time::sleep(pause).await;
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("loader"));
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all
}

/// Of `outcomes` between `from` and `to` (seconds): how many, and how many
/// answered `body`.
pub fn share(outcomes: &[Outcome], from: f64, to: f64, body: &str) -> (usize, usize) {
    let window: Vec<&Outcome> = outcomes
        .iter()
        .filter(|(at, _)| *at > from && *at < to)
        .collect();
    let hits = window
        .iter()
        .filter(|(_, r)| matches!(r, Ok((_, b)) if b == body))
        .count();
    (window.len(), hits)
}

/// The outcomes that are not a `200`.
pub fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes
        .iter()
        .filter(|(_, r)| !matches!(r, Ok((200, _))))
        .collect()
}

/// Healthy targets of `tg`.
pub async fn healthy(env: &Env, tg: &str) -> usize {
    target_health(env, tg)
        .await
        .iter()
        .filter(|d| d["TargetHealth"]["State"] == "healthy")
        .count()
}

/// An application load balancer set up for traffic shifting: two target
/// groups (`blue`, `green`, from [`http_target_group`]), an HTTP listener
/// on port 80 forwarding to blue, a production rule (`/*`, priority 10)
/// forwarding to both (100/0) and, when asked, a test rule (`/test/*`,
/// priority 5) the same way.
pub struct ShiftingLb {
    pub arn: String,
    pub dns: String,
    /// `DNS:80`, for [`Conn::open`].
    pub addr: String,
    pub blue: String,
    pub green: String,
    pub listener: String,
    pub production_rule: String,
    pub test_rule: Option<String>,
}

impl ShiftingLb {
    pub async fn create(env: &Env, name: &str, test_rule: bool) -> ShiftingLb {
        let lb = aws(
            env,
            "elbv2",
            &[
                "create-load-balancer",
                "--name",
                name,
                "--type",
                "application",
                "--subnets",
                "subnet-1",
            ],
        )
        .await;
        let arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
        aws(
            env,
            "elbv2",
            &[
                "wait",
                "load-balancer-available",
                "--load-balancer-arns",
                &arn,
            ],
        )
        .await;
        let dns = s(&aws(
            env,
            "elbv2",
            &["describe-load-balancers", "--load-balancer-arns", &arn],
        )
        .await["LoadBalancers"][0]["DNSName"]);
        let blue = http_target_group(env, &format!("{name}-blue")).await;
        let green = http_target_group(env, &format!("{name}-green")).await;
        let listener = forward_listener(env, &arn, "HTTP", 80, &blue).await;
        let both = json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]}}])
        .to_string();
        let rule = |priority: &'static str, pattern: &'static str| {
            let (listener, both) = (listener.clone(), both.clone());
            async move {
                let r = aws(
                    env,
                    "elbv2",
                    &[
                        "create-rule",
                        "--listener-arn",
                        &listener,
                        "--priority",
                        priority,
                        "--conditions",
                        &format!("Field=path-pattern,Values={pattern}"),
                        "--actions",
                        &both,
                    ],
                )
                .await;
                s(&r["Rules"][0]["RuleArn"])
            }
        };
        let production_rule = rule("10", "/*").await;
        let test_rule = if test_rule {
            Some(rule("5", "/test/*").await)
        } else {
            None
        };
        ShiftingLb {
            arn,
            addr: format!("{dns}:80"),
            dns,
            blue,
            green,
            listener,
            production_rule,
            test_rule,
        }
    }

    /// The `loadBalancers` of a service on port 8080 of container `app`,
    /// with the `advancedConfiguration` naming green and the rules.
    pub fn service_load_balancers(&self) -> String {
        let mut advanced = json!({"alternateTargetGroupArn": self.green,
            "productionListenerRule": self.production_rule,
            "roleArn": "arn:aws:iam::111111111111:role/ecs"});
        if let Some(test) = &self.test_rule {
            advanced["testListenerRule"] = json!(test);
        }
        json!([{"targetGroupArn": self.blue, "containerName": "app", "containerPort": 8080,
            "advancedConfiguration": advanced}])
        .to_string()
    }
}
