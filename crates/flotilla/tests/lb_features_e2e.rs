//! End to end: the ALB features the routing test does not reach, through a
//! real load-balancer node (`flotilla_lb`, in-process as `flotilla dev` runs
//! it, on 127.0.13.10) configured by the real AWS CLI against a real
//! control plane, with in-test HTTP servers as `ip` targets on 127.0.13.x:
//!
//! - rule conditions `http-header` (with a wildcard), `http-request-method`,
//!   `query-string` and `source-ip`, evaluated lowest priority first, with
//!   the default action when none matches;
//! - `lb_cookie` stickiness: without the cookie requests are spread over the
//!   group's two targets; with the `AWSALB` cookie the node set, every one
//!   goes to the same target;
//! - 504 when a target does not answer within the load balancer's idle
//!   timeout (`idle_timeout.timeout_seconds` 1, changed while running);
//! - slow start: a target joining a group whose slow start is on gets a
//!   small share of the requests at first, and its full share after the
//!   period;
//! - the node's counters reaching CloudWatch as `AWS/ApplicationELB`
//!   metrics (`RequestCount`, `HTTPCode_ELB_5XX_Count`, per-group
//!   `TargetResponseTime` and `HealthyHostCount`), read back with
//!   `get-metric-statistics`.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lb::{aws, load_balancer, rule, s, target_group, target_health, Conn, LbNode};
use common::{wait_for, Env};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The node's address, a client address for `source-ip`, and the first of
/// the in-test targets' addresses (one each, upwards).
const NODE: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 13, 50);
const FIRST_TARGET: u8 = 21;

fn log(what: impl AsRef<str>) {
    eprintln!("lb features e2e: {}", what.as_ref());
}

/// An in-test HTTP/1.1 target: answers every request with its name (200);
/// `/slow…` after 3 s. It keeps the method and path of every request that
/// is not a health check.
struct Echo {
    name: String,
    ip: Ipv4Addr,
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start(name: &str, n: u8) -> Echo {
        let ip = Ipv4Addr::new(127, 0, 13, FIRST_TARGET + n);
        let listener = TcpListener::bind((ip, 0)).await.expect("bind a target");
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (body, log) = (name.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (body, log) = (body.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = Echo::answer(stream, &body, &log).await;
                });
            }
        });
        Echo {
            name: name.to_string(),
            ip,
            port,
            seen,
            task,
        }
    }

    async fn answer(
        stream: TcpStream,
        body: &str,
        seen: &Mutex<Vec<String>>,
    ) -> std::io::Result<()> {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let request_line = line.trim_end().to_string();
            let (mut length, mut check) = (0usize, false);
            loop {
                line.clear();
                if stream.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let h = line.trim_end().to_ascii_lowercase();
                if h.is_empty() {
                    break;
                }
                if let Some(v) = h.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                check |= h.starts_with("user-agent: elb-healthchecker/");
            }
            let mut request_body = vec![0; length];
            stream.read_exact(&mut request_body).await?;
            if !check {
                seen.lock().unwrap().push(request_line.clone());
                if request_line
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|p| p.starts_with("/slow"))
                {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.get_mut().write_all(answer.as_bytes()).await?;
        }
    }

    /// `Id=IP,Port=PORT` for register-targets.
    fn target(&self) -> String {
        format!("Id={},Port={}", self.ip, self.port)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An `ip` target group over `targets`, all registered; its ARN.
async fn group_of(env: &Env, name: &str, targets: Vec<&Echo>) -> String {
    let port = targets[0].port.to_string();
    let tg = target_group(
        env,
        name,
        &[
            "--protocol",
            "HTTP",
            "--port",
            &port,
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
        ],
    )
    .await;
    let mut args = vec!["register-targets", "--target-group-arn", &tg, "--targets"];
    let ids: Vec<String> = targets.iter().map(|t| t.target()).collect();
    args.extend(ids.iter().map(String::as_str));
    aws(env, "elbv2", &args).await;
    tg
}

/// A whole request with `Host: feat`, `extra` header lines (each ending in
/// CRLF) and an optional body.
fn request(method: &str, path: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: feat\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `req` on `conn`: (status, body).
async fn send(conn: &mut Conn, req: &str) -> (u16, String) {
    let r = conn
        .send(req)
        .await
        .unwrap_or_else(|e| panic!("{req:?}: {e}"));
    (r.status, r.body)
}

/// Each condition sends its requests to its group; a request no rule
/// matches gets the default action; the lowest priority wins.
async fn conditions_route(listen: &str) {
    let mut conn = Conn::open(listen).await.expect("connect");
    let cases = [
        (
            "header matches the wildcard",
            request("GET", "/", "X-Canary: yes-please\r\n", ""),
            "header",
        ),
        (
            "header value does not match",
            request("GET", "/", "X-Canary: no\r\n", ""),
            "no rule",
        ),
        ("POST", request("POST", "/", "", "abc"), "post"),
        ("PUT is not POST", request("PUT", "/", "", "abc"), "no rule"),
        ("query v=2", request("GET", "/?v=2", "", ""), "query"),
        (
            "query v=2 among others",
            request("GET", "/x?a=1&v=2", "", ""),
            "query",
        ),
        ("query v=3", request("GET", "/?v=3", "", ""), "no rule"),
        (
            "header (10) before method (20)",
            request("POST", "/", "X-Canary: yes\r\n", "abc"),
            "header",
        ),
        (
            "method (20) before query (30)",
            request("POST", "/?v=2", "", "abc"),
            "post",
        ),
        ("no condition holds", request("GET", "/", "", ""), "no rule"),
    ];
    for (what, req, want) in &cases {
        let (status, body) = send(&mut conn, req).await;
        let want_status = if *want == "no rule" { 404 } else { 200 };
        assert_eq!(
            (status, body.as_str()),
            (want_status, *want),
            "{what}: {req:?}"
        );
    }
    // source-ip: the same request from 127.0.13.50 matches; from 127.0.0.1
    // it did not (above).
    let mut from = Conn::open_from(listen, IpAddr::V4(CLIENT))
        .await
        .expect("connect from");
    let (status, body) = send(&mut from, &request("GET", "/", "", "")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "source"),
        "source-ip {CLIENT}/32"
    );
    let (_, body) = send(&mut from, &request("GET", "/?v=2", "", "")).await;
    assert_eq!(body, "query", "query (30) before source-ip (40)");
    log(format!(
        "{} requests routed by http-header, http-request-method, query-string and source-ip \
         conditions in priority order, the rest by the default action",
        cases.len() + 2
    ));
}

/// Without the cookie, requests are spread over both targets; with the
/// `AWSALB` cookie from an answer, every request reaches that answer's
/// target.
async fn stickiness_holds(listen: &str, targets: [&Echo; 2]) {
    let mut conn = Conn::open(listen).await.expect("connect");
    let mut spread = BTreeMap::<String, usize>::new();
    let mut cookie = None;
    for _ in 0..20 {
        let r = conn
            .send(&request("GET", "/sticky", "", ""))
            .await
            .expect("GET /sticky");
        assert_eq!(r.status, 200);
        *spread.entry(r.body.clone()).or_default() += 1;
        let set = r
            .header("set-cookie")
            .expect("a Set-Cookie from a sticky group");
        let pair = set.split(';').next().unwrap().to_string();
        assert!(pair.starts_with("AWSALB="), "{set}");
        cookie.get_or_insert((pair, r.body));
    }
    assert_eq!(
        spread.len(),
        2,
        "without a cookie both targets answer: {spread:?}"
    );
    let (pair, first) = cookie.unwrap();
    for _ in 0..20 {
        let (status, body) = send(
            &mut conn,
            &request("GET", "/sticky", &format!("Cookie: {pair}\r\n"), ""),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (200, first.as_str()),
            "with {pair}"
        );
    }
    let stuck = targets.iter().find(|t| t.name == first).unwrap();
    log(format!(
        "stickiness: without a cookie {spread:?}; with {pair}: 20 of 20 at {}",
        stuck.name
    ));
}

/// With an idle timeout of 1 s, a target taking 3 s costs a 504 after about
/// 1 s.
async fn slow_target_times_out(env: &Env, lb: &str, listen: &str, slow: &Echo) {
    aws(
        env,
        "elbv2",
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            lb,
            "--attributes",
            "Key=idle_timeout.timeout_seconds,Value=1",
        ],
    )
    .await;
    // The node applies the change at its next configuration version.
    let (took, body) = wait_for(
        "a 504 from the slow target",
        Duration::from_secs(30),
        || async {
            let mut conn = Conn::open(listen).await.ok()?;
            let asked = Instant::now();
            let r = conn.send(&request("GET", "/slow", "", "")).await.ok()?;
            (r.status == 504).then(|| (asked.elapsed(), r.body))
        },
    )
    .await;
    assert!(body.contains("504"), "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "504 after the 1 s idle timeout, not the target's 3 s: {took:?}"
    );
    assert!(
        !slow.seen.lock().unwrap().is_empty(),
        "the request reached the slow target"
    );
    log(format!(
        "504 after {:.2} s (idle timeout 1 s, target answering after 3 s)",
        took.as_secs_f64()
    ));
}

/// `slow_start.duration_seconds` 30 turned on while `a` alone is healthy
/// (it does not enter slow start); `b` registered after: just after it
/// turns healthy it gets a small share of the requests (ELBv2 ramps
/// linearly; the node starts at a tenth), after the period half.
async fn slow_start_ramps(env: &Env, listen: &str, tg: &str, b: &Echo) {
    aws(
        env,
        "elbv2",
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            tg,
            "--attributes",
            "Key=slow_start.duration_seconds,Value=30",
        ],
    )
    .await;
    aws(
        env,
        "elbv2",
        &[
            "register-targets",
            "--target-group-arn",
            tg,
            "--targets",
            &b.target(),
        ],
    )
    .await;
    wait_for(
        "the second ramp target healthy",
        Duration::from_secs(60),
        || async {
            let t = target_health(env, tg).await;
            (t.len() == 2 && t.iter().all(|d| d["TargetHealth"]["State"] == "healthy"))
                .then_some(())
        },
    )
    .await;
    let healthy = Instant::now();
    let share_of_b = || async {
        let mut conn = Conn::open(listen).await.expect("connect");
        let mut at_b = 0;
        for _ in 0..100 {
            let (status, body) = send(&mut conn, &request("GET", "/ramp", "", "")).await;
            assert_eq!(status, 200);
            at_b += usize::from(body == b.name);
        }
        at_b
    };
    let early = share_of_b().await;
    let early_at = healthy.elapsed().as_secs_f64();
    // The node learns of the health change with its next report cycle, so
    // the slow start it applies began at most a few seconds before ours.
    assert!(
        (1..30).contains(&early),
        "in slow start the new target gets a small share (of 100): {early} ({early_at:.1} s in)"
    );
    tokio::time::sleep(Duration::from_secs(32).saturating_sub(healthy.elapsed())).await;
    let after = share_of_b().await;
    assert!(
        (40..=60).contains(&after),
        "after the period, half (of 100): {after}"
    );
    log(format!(
        "slow start 30 s: the new target took {early} of 100 requests {early_at:.1} s after turning \
         healthy, {after} of 100 after the period"
    ));
}

/// `get-metric-statistics` of an `AWS/ApplicationELB` metric over the last
/// ten minutes: (Sum, SampleCount) over every datapoint.
async fn statistic(env: &Env, metric: &str, dimensions: &[&str]) -> (f64, f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
    let mut args = vec![
        "get-metric-statistics",
        "--namespace",
        "AWS/ApplicationELB",
        "--metric-name",
        metric,
        "--start-time",
        &start,
        "--end-time",
        &end,
        "--period",
        "60",
        "--statistics",
        "Sum",
        "SampleCount",
        "--dimensions",
    ];
    args.extend(dimensions);
    let v = aws(env, "cloudwatch", &args).await;
    let points = v["Datapoints"].as_array().cloned().unwrap_or_default();
    points.iter().fold((0.0, 0.0), |(sum, n), p| {
        (
            sum + p["Sum"].as_f64().unwrap_or(0.0),
            n + p["SampleCount"].as_f64().unwrap_or(0.0),
        )
    })
}

/// The node's counters arrive as CloudWatch metrics with ELBv2's names and
/// dimensions: every request sent so far counted, the 504 among the ELB's
/// 5XX, the sticky group's response times and healthy hosts.
async fn metrics_reach_cloudwatch(env: &Env, lb: &str, sticky_tg: &str, sent: usize) {
    // ELBv2's dimension values: `app/NAME/ID` and `targetgroup/NAME/ID`.
    let lb_dim = format!(
        "Name=LoadBalancer,Value={}",
        lb.split_once(":loadbalancer/").unwrap().1
    );
    let tg_dim = format!(
        "Name=TargetGroup,Value={}",
        sticky_tg.rsplit_once(':').unwrap().1
    );
    let per_group = [tg_dim.as_str(), lb_dim.as_str()];
    let started = Instant::now();
    // Nodes report every 10 s.
    let (requests, elb_5xx) = wait_for(
        "the node's counters in CloudWatch",
        Duration::from_secs(45),
        || async {
            let (requests, _) = statistic(env, "RequestCount", &[&lb_dim]).await;
            let (elb_5xx, _) = statistic(env, "HTTPCode_ELB_5XX_Count", &[&lb_dim]).await;
            (requests >= sent as f64 && elb_5xx >= 1.0).then_some((requests, elb_5xx))
        },
    )
    .await;
    let (_, responses) = statistic(env, "TargetResponseTime", &per_group).await;
    let (healthy, samples) = statistic(env, "HealthyHostCount", &per_group).await;
    assert!(
        responses >= 40.0,
        "TargetResponseTime samples for the 40 sticky requests: {responses}"
    );
    assert!(
        samples >= 1.0 && healthy / samples > 1.5,
        "HealthyHostCount of the sticky group is 2: {healthy}/{samples}"
    );
    log(format!(
        "CloudWatch after {:.1} s: RequestCount {requests} (≥ {sent} sent), HTTPCode_ELB_5XX_Count {elb_5xx}, \
         TargetResponseTime samples {responses}, HealthyHostCount mean {:.1}",
        started.elapsed().as_secs_f64(),
        healthy / samples
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_conditions_stickiness_timeouts_and_metrics_through_a_node() {
    let env = Env::start("e2e-lbf").await;
    let _node = LbNode::start(&env, "e2e-lbf-node", &[IpAddr::V4(NODE)]);
    let header = Echo::start("header", 0).await;
    let post = Echo::start("post", 1).await;
    let query = Echo::start("query", 2).await;
    let source = Echo::start("source", 3).await;
    let sticky = [
        Echo::start("sticky-a", 4).await,
        Echo::start("sticky-b", 5).await,
    ];
    let slow = Echo::start("slow", 6).await;
    let ramp = [
        Echo::start("ramp-a", 7).await,
        Echo::start("ramp-b", 8).await,
    ];

    let (lb, dns) = load_balancer(&env, "feat", "application").await;
    assert_eq!(dns, NODE.to_string());
    let (header_tg, post_tg, query_tg, source_tg, sticky_tg, slow_tg, ramp_tg) = tokio::join!(
        group_of(&env, "header", vec![&header]),
        group_of(&env, "post", vec![&post]),
        group_of(&env, "query", vec![&query]),
        group_of(&env, "source", vec![&source]),
        group_of(&env, "sticky", vec![&sticky[0], &sticky[1]]),
        group_of(&env, "slow", vec![&slow]),
        group_of(&env, "ramp", vec![&ramp[0]]),
    );
    aws(
        &env,
        "elbv2",
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &sticky_tg,
            "--attributes",
            "Key=stickiness.enabled,Value=true",
            "Key=stickiness.type,Value=lb_cookie",
            "Key=stickiness.lb_cookie.duration_seconds,Value=60",
        ],
    )
    .await;
    let listener = aws(
        &env,
        "elbv2",
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"404","ContentType":"text/plain","MessageBody":"no rule"}}]"#,
        ],
    )
    .await;
    let listener = s(&listener["Listeners"][0]["ListenerArn"]);
    let forward = |tg: &str| json!([{"Type": "forward", "TargetGroupArn": tg}]);
    let rules: [(u32, Value, &String); 7] = [
        (
            10,
            json!([{"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Canary", "Values": ["yes*"]}}]),
            &header_tg,
        ),
        (
            20,
            json!([{"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["POST"]}}]),
            &post_tg,
        ),
        (
            30,
            json!([{"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}]}}]),
            &query_tg,
        ),
        (
            40,
            json!([{"Field": "source-ip", "SourceIpConfig": {"Values": [format!("{CLIENT}/32")]}}]),
            &source_tg,
        ),
        (
            50,
            json!([{"Field": "path-pattern", "Values": ["/sticky*"]}]),
            &sticky_tg,
        ),
        (
            60,
            json!([{"Field": "path-pattern", "Values": ["/slow*"]}]),
            &slow_tg,
        ),
        (
            70,
            json!([{"Field": "path-pattern", "Values": ["/ramp*"]}]),
            &ramp_tg,
        ),
    ];
    for (priority, conditions, tg) in &rules {
        rule(
            &env,
            &listener,
            *priority,
            &conditions.to_string(),
            forward(tg),
        )
        .await;
    }
    for tg in [
        &header_tg, &post_tg, &query_tg, &source_tg, &sticky_tg, &slow_tg, &ramp_tg,
    ] {
        wait_for("healthy targets", Duration::from_secs(60), || async {
            let t = target_health(&env, tg).await;
            t.iter()
                .all(|d| d["TargetHealth"]["State"] == "healthy")
                .then_some(())
        })
        .await;
    }
    let listen = format!("{dns}:80");
    // The rules reach the node with its next configuration version.
    wait_for("the rules at the node", Duration::from_secs(20), || async {
        let mut conn = Conn::open(&listen).await.ok()?;
        let r = conn
            .send(&request("GET", "/probe", "X-Canary: yes\r\n", ""))
            .await
            .ok()?;
        (r.body == "header").then_some(())
    })
    .await;

    // Slow start takes half a minute of its own; the rest runs meanwhile.
    let rest = async {
        conditions_route(&listen).await;
        stickiness_holds(&listen, [&sticky[0], &sticky[1]]).await;
        slow_target_times_out(&env, &lb, &listen, &slow).await;
    };
    tokio::join!(rest, slow_start_ramps(&env, &listen, &ramp_tg, &ramp[1]));
    // Every request above went through the listener: 1 probe at least, 12
    // condition cases, 40 sticky, at least one /slow, 200 to /ramp.
    metrics_reach_cloudwatch(&env, &lb, &sticky_tg, 1 + 12 + 40 + 1 + 200).await;
    // Forwarded (not answered by the default action): the probe, 8 of the
    // condition cases, 40 sticky, the /slow one, 200 to /ramp.
    let seen: usize = [
        &header, &post, &query, &source, &sticky[0], &sticky[1], &slow, &ramp[0], &ramp[1],
    ]
    .iter()
    .map(|e| e.seen.lock().unwrap().len())
    .sum();
    assert!(
        seen >= 250,
        "the targets saw every forwarded request: {seen}"
    );
}
