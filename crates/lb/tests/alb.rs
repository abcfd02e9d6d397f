//! Application load balancer behaviour through a real node: real sockets on
//! loopback addresses, real HTTP to real backends, configs pushed by a test
//! control plane over a real WebSocket.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use flotilla_model::lb::*;

const TG_A: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/a/1";
const TG_B: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/b/2";
const TG_EMPTY: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/empty/3";
const TG_DEAD: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/dead/4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_by_every_condition_kind() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.1").await;
    let b = Backend::start("b", "127.0.1.2").await;
    let _node = start_node(&cp, &["127.0.0.30"]);
    let fixed = |s: &str| Action::FixedResponse {
        status_code: 200,
        content_type: Some("text/plain".into()),
        body: Some(s.into()),
    };
    let rules = vec![
        rule(
            1,
            vec![Condition::PathPattern {
                values: vec!["/api/*".into()],
            }],
            forward(TG_B),
        ),
        rule(
            2,
            vec![Condition::HostHeader {
                values: vec!["*.example.com".into()],
            }],
            fixed("host"),
        ),
        rule(
            3,
            vec![Condition::HttpHeader {
                name: "X-Canary".into(),
                values: vec!["yes".into()],
            }],
            fixed("header"),
        ),
        rule(
            4,
            vec![Condition::HttpRequestMethod {
                values: vec!["DELETE".into()],
            }],
            fixed("method"),
        ),
        rule(
            5,
            vec![Condition::QueryString {
                values: vec![(Some("v".into()), "2".into())],
            }],
            fixed("query"),
        ),
        rule(
            6,
            vec![Condition::SourceIp {
                values: vec!["127.0.0.2/32".into()],
            }],
            fixed("source"),
        ),
        // Two conditions: both must hold.
        rule(
            7,
            vec![
                Condition::PathPattern {
                    values: vec!["/both".into()],
                },
                Condition::HttpRequestMethod {
                    values: vec!["POST".into()],
                },
            ],
            fixed("both"),
        ),
        rule(
            8,
            vec![Condition::PathPattern {
                values: vec!["/gone".into()],
            }],
            Action::Redirect {
                protocol: "HTTPS".into(),
                host: "#{host}".into(),
                port: "443".into(),
                path: "/new/#{path}".into(),
                query: "#{query}".into(),
                status_code: 301,
            },
        ),
        rule(
            9,
            vec![Condition::PathPattern {
                values: vec!["/empty".into()],
            }],
            forward(TG_EMPTY),
        ),
        rule(
            10,
            vec![Condition::PathPattern {
                values: vec!["/dead".into()],
            }],
            forward(TG_DEAD),
        ),
        rule(
            11,
            vec![Condition::PathPattern {
                values: vec!["/teapot".into()],
            }],
            Action::FixedResponse {
                status_code: 418,
                content_type: Some("application/json".into()),
                body: Some("{\"tea\":true}".into()),
            },
        ),
    ];
    // A dead target: an address nothing listens on.
    let dead = TargetConfig {
        id: "127.0.1.3".into(),
        address: "127.0.1.3".parse().unwrap(),
        port: 9,
        state: TargetState::Active,
        registered_at: 0.0,
    };
    cp.apply(
        1,
        config(
            vec![listener("127.0.0.30", 8080, rules, forward(TG_A))],
            vec![
                group(TG_A, vec![a.target()]),
                group(TG_B, vec![b.target()]),
                group(TG_EMPTY, vec![]),
                group(TG_DEAD, vec![dead]),
            ],
        ),
    )
    .await;
    // The node said who it is and which addresses it may bind.
    let q = cp.query.lock().unwrap()[0].clone();
    assert_eq!(q.get("node").map(String::as_str), Some("test-node"));
    assert_eq!(q.get("addresses").map(String::as_str), Some("127.0.0.30"));
    assert!(q.contains_key("X-Amz-Signature"), "{q:?}");

    let c = http_client("127.0.0.1");
    let base = "http://127.0.0.30:8080";
    let r = get(&c, &format!("{base}/")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "a"));
    // X-Forwarded-* as ALB sets them; Host is kept.
    assert_eq!(r.headers["x-seen-x-forwarded-for"], "127.0.0.1");
    assert_eq!(r.headers["x-seen-x-forwarded-proto"], "http");
    assert_eq!(r.headers["x-seen-x-forwarded-port"], "8080");
    assert_eq!(r.headers["x-seen-host"], "127.0.0.30:8080");
    let r = request(
        &c,
        "GET",
        &format!("{base}/"),
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    assert_eq!(
        r.headers["x-seen-x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );

    assert_eq!(get(&c, &format!("{base}/api/users")).await.body, "b");
    // Path patterns are case-sensitive.
    assert_eq!(get(&c, &format!("{base}/API/users")).await.body, "a");
    let r = request(
        &c,
        "GET",
        &format!("{base}/x"),
        &[("host", "WWW.Example.com")],
    )
    .await;
    assert_eq!(r.body, "host");
    let r = request(&c, "GET", &format!("{base}/x"), &[("x-canary", "YES")]).await;
    assert_eq!(r.body, "header");
    assert_eq!(
        request(&c, "DELETE", &format!("{base}/x"), &[]).await.body,
        "method"
    );
    assert_eq!(
        request(&c, "delete", &format!("{base}/x"), &[]).await.body,
        "a"
    );
    assert_eq!(get(&c, &format!("{base}/x?a=1&v=2")).await.body, "query");
    assert_eq!(get(&c, &format!("{base}/x?v=3")).await.body, "a");
    assert_eq!(
        get(&http_client("127.0.0.2"), &format!("{base}/x"))
            .await
            .body,
        "source"
    );
    assert_eq!(
        request(&c, "POST", &format!("{base}/both"), &[]).await.body,
        "both"
    );
    assert_eq!(get(&c, &format!("{base}/both")).await.body, "a");

    let r = request(
        &c,
        "GET",
        &format!("{base}/gone?q=1"),
        &[("host", "shop.test")],
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://shop.test/new/gone?q=1");
    let r = get(&c, &format!("{base}/teapot")).await;
    assert_eq!((r.status, r.body.as_str()), (418, "{\"tea\":true}"));
    assert_eq!(r.headers["content-type"], "application/json");

    // No registered target: 503. Target connection refused: 502.
    assert_eq!(get(&c, &format!("{base}/empty")).await.status, 503);
    assert_eq!(get(&c, &format!("{base}/dead")).await.status, 502);
    // The target's own status passes through.
    assert_eq!(get(&c, &format!("{base}/status/404")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_forward_splits_exactly_and_round_robin_spreads() {
    let cp = ControlPlane::start().await;
    let a1 = Backend::start("a1", "127.0.1.11").await;
    let a2 = Backend::start("a2", "127.0.1.12").await;
    let b = Backend::start("b", "127.0.1.13").await;
    let _node = start_node(&cp, &["127.0.0.31"]);
    let weighted = Action::Forward {
        target_groups: vec![
            WeightedTargetGroup {
                target_group_arn: TG_A.into(),
                weight: 70,
            },
            WeightedTargetGroup {
                target_group_arn: TG_B.into(),
                weight: 30,
            },
        ],
        stickiness_secs: None,
    };
    cp.apply(
        1,
        config(
            vec![listener("127.0.0.31", 8080, vec![], weighted)],
            vec![
                group(TG_A, vec![a1.target(), a2.target()]),
                group(TG_B, vec![b.target()]),
            ],
        ),
    )
    .await;
    let c = http_client("127.0.0.1");
    let n = 1000;
    for _ in 0..n {
        let r = get(&c, "http://127.0.0.31:8080/").await;
        assert_eq!(r.status, 200);
    }
    let (x1, x2, y) = (a1.requests(), a2.requests(), b.requests());
    assert_eq!(x1 + x2 + y, n);
    // ±5 % of 1000 is ±50; smooth weighted round robin is exact.
    assert!((650..=750).contains(&(x1 + x2)), "a: {}", x1 + x2);
    assert!((250..=350).contains(&y), "b: {y}");
    // Round robin within a group.
    assert!(x1.abs_diff(x2) <= 2, "{x1} vs {x2}");
    // Keep-alive to targets: far fewer connections than requests.
    let conns = a1.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(conns < 50, "{conns} connections for {x1} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stickiness_keeps_a_client_on_its_target_and_group() {
    let cp = ControlPlane::start().await;
    let a1 = Backend::start("a1", "127.0.1.21").await;
    let a2 = Backend::start("a2", "127.0.1.22").await;
    let b = Backend::start("b", "127.0.1.23").await;
    let _node = start_node(&cp, &["127.0.0.32"]);
    let mut ga = group(TG_A, vec![a1.target(), a2.target()]);
    ga.stickiness_secs = Some(3600);
    let weighted = Action::Forward {
        target_groups: vec![
            WeightedTargetGroup {
                target_group_arn: TG_A.into(),
                weight: 1,
            },
            WeightedTargetGroup {
                target_group_arn: TG_B.into(),
                weight: 1,
            },
        ],
        stickiness_secs: Some(600),
    };
    let rules = vec![rule(
        1,
        vec![Condition::PathPattern {
            values: vec!["/w".into()],
        }],
        weighted,
    )];
    cp.apply(
        1,
        config(
            vec![listener("127.0.0.32", 8080, rules, forward(TG_A))],
            vec![ga, group(TG_B, vec![b.target()])],
        ),
    )
    .await;
    let c = http_client("127.0.0.1");
    // lb_cookie: the first answer names the target; sending it back sticks.
    let first = get(&c, "http://127.0.0.32:8080/").await;
    let cookie = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("AWSALB=") && cookie.contains("Max-Age=3600"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().to_string();
    for _ in 0..20 {
        let r = request(&c, "GET", "http://127.0.0.32:8080/", &[("cookie", &value)]).await;
        assert_eq!(r.body, first.body);
    }
    // Without the cookie: round robin reaches both.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(get(&c, "http://127.0.0.32:8080/").await.body);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Target-group stickiness on a weighted forward: AWSALBTG.
    let first = get(&c, "http://127.0.0.32:8080/w").await;
    let tg_cookie = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("AWSALBTG="))
        .expect("an AWSALBTG cookie");
    let value = tg_cookie.split(';').next().unwrap().to_string();
    let group_of = |body: &str| if body == "b" { "b" } else { "a" };
    for _ in 0..10 {
        let r = request(&c, "GET", "http://127.0.0.32:8080/w", &[("cookie", &value)]).await;
        assert_eq!(group_of(&r.body), group_of(&first.body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_report_transitions_and_steer_traffic() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.31").await;
    let b = Backend::start("b", "127.0.1.32").await;
    let slow = Backend::start("slow", "127.0.1.33").await;
    let _node = start_node(&cp, &["127.0.0.33"]);
    let mut slow_group = group(TG_B, vec![slow.target()]);
    slow_group.health_check.path = "/health-slow".into();
    cp.apply(
        1,
        config(
            vec![listener("127.0.0.33", 8080, vec![], forward(TG_A))],
            vec![group(TG_A, vec![a.target(), b.target()]), slow_group],
        ),
    )
    .await;
    cp.wait_health(
        a.addr,
        ObservedHealth::Initial,
        Some("Elb.InitialHealthChecking"),
    )
    .await;
    cp.wait_health(a.addr, ObservedHealth::Healthy, None).await;
    cp.wait_health(b.addr, ObservedHealth::Healthy, None).await;

    // b answers 500: unhealthy after two checks, with ELBv2's reason.
    b.health.store(500, std::sync::atomic::Ordering::SeqCst);
    let r = cp
        .wait_health(
            b.addr,
            ObservedHealth::Unhealthy,
            Some("Target.ResponseCodeMismatch"),
        )
        .await;
    assert_eq!(
        r.description.as_deref(),
        Some("Health checks failed with these codes: [500]")
    );
    assert_eq!(r.target_group_arn, TG_A);
    // Only the healthy target gets traffic now.
    let c = http_client("127.0.0.1");
    let before = b.requests();
    for _ in 0..10 {
        assert_eq!(get(&c, "http://127.0.0.33:8080/").await.body, "a");
    }
    assert_eq!(b.requests(), before);

    // A check that times out.
    cp.wait_health(slow.addr, ObservedHealth::Unhealthy, Some("Target.Timeout"))
        .await;

    // b recovers after the healthy threshold.
    b.health.store(200, std::sync::atomic::Ordering::SeqCst);
    cp.wait_latest(b.addr, ObservedHealth::Healthy).await;

    // Every target unhealthy: ALB fails open and routes to all of them.
    a.health.store(503, std::sync::atomic::Ordering::SeqCst);
    b.health.store(503, std::sync::atomic::Ordering::SeqCst);
    cp.wait_latest(a.addr, ObservedHealth::Unhealthy).await;
    cp.wait_latest(b.addr, ObservedHealth::Unhealthy).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let r = get(&c, "http://127.0.0.33:8080/").await;
        assert_eq!(r.status, 200);
        seen.insert(r.body);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_target_finishes_in_flight_requests_and_gets_no_new_ones() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.41").await;
    let b = Backend::start("b", "127.0.1.42").await;
    let _node = start_node(&cp, &["127.0.0.34"]);
    let l = || listener("127.0.0.34", 8080, vec![], forward(TG_A));
    cp.apply(1, config(vec![l()], vec![group(TG_A, vec![a.target()])]))
        .await;
    let c = http_client("127.0.0.1");
    // A slow request to a, in flight while a is deregistered.
    let c2 = c.clone();
    let in_flight = tokio::spawn(async move { get(&c2, "http://127.0.0.34:8080/slow/2000").await });
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.requests() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.requests(), 1, "the slow request reached a");
    let mut draining = a.target();
    draining.state = TargetState::Draining {
        until: epoch_now() + 60.0,
    };
    cp.apply(
        2,
        config(
            vec![l()],
            vec![group(TG_A, vec![draining.clone(), b.target()])],
        ),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(get(&c, "http://127.0.0.34:8080/").await.body, "b");
    }
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "a"));
    assert_eq!(a.requests(), 1);

    // Only draining targets left: no target takes requests, 503.
    cp.apply(3, config(vec![l()], vec![group(TG_A, vec![draining])]))
        .await;
    assert_eq!(get(&c, "http://127.0.0.34:8080/").await.status, 503);

    // A request in flight when the deregistration delay ends is cut (502).
    cp.apply(4, config(vec![l()], vec![group(TG_A, vec![a.target()])]))
        .await;
    let c2 = c.clone();
    let in_flight =
        tokio::spawn(async move { get(&c2, "http://127.0.0.34:8080/slow/20000").await });
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.requests() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut short = a.target();
    short.state = TargetState::Draining {
        until: epoch_now() + 1.0,
    };
    cp.apply(5, config(vec![l()], vec![group(TG_A, vec![short])]))
        .await;
    let r = tokio::time::timeout(Duration::from_secs(15), in_flight)
        .await
        .expect("cut well before 20 s")
        .unwrap();
    assert_eq!(r.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_keep_open_connections_and_in_flight_requests() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.51").await;
    let b = Backend::start("b", "127.0.1.52").await;
    let _node = start_node(&cp, &["127.0.0.35", "127.0.0.36"]);
    // Without health checks, every connection a backend sees is the proxy's.
    let unchecked = |arn: &str, t: TargetConfig| {
        let mut g = group(arn, vec![t]);
        g.health_check.enabled = false;
        g
    };
    cp.apply(
        1,
        config(
            vec![listener("127.0.0.35", 8080, vec![], forward(TG_A))],
            vec![unchecked(TG_A, a.target())],
        ),
    )
    .await;
    let mut conn = tokio::net::TcpStream::connect("127.0.0.35:8080")
        .await
        .unwrap();
    assert_eq!(raw_exchange(&mut conn, "/").await, (200, "a".to_string()));
    let c = http_client("127.0.0.1");
    let c2 = c.clone();
    let in_flight = tokio::spawn(async move { get(&c2, "http://127.0.0.35:8080/slow/1500").await });
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.requests() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let target_conns = a.connections.load(std::sync::atomic::Ordering::SeqCst);

    // Version 2: a new rule, a new group, a second listener on another address.
    let rules = vec![rule(
        1,
        vec![Condition::PathPattern {
            values: vec!["/new".into()],
        }],
        forward(TG_B),
    )];
    cp.apply(
        2,
        config(
            vec![
                listener("127.0.0.35", 8080, rules, forward(TG_A)),
                listener("127.0.0.36", 8080, vec![], forward(TG_B)),
            ],
            vec![unchecked(TG_A, a.target()), unchecked(TG_B, b.target())],
        ),
    )
    .await;
    // The same client connection, now routed by the new table.
    assert_eq!(
        raw_exchange(&mut conn, "/new").await,
        (200, "b".to_string())
    );
    assert_eq!(raw_exchange(&mut conn, "/").await, (200, "a".to_string()));
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "a"));
    assert_eq!(get(&c, "http://127.0.0.36:8080/").await.body, "b");
    // At most one more connection to a: the first was busy with the
    // in-flight request.
    let after = a.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after <= target_conns + 1, "{target_conns} → {after}");

    // Version 3 removes the second listener: its port closes.
    cp.apply(
        3,
        config(
            vec![listener("127.0.0.35", 8080, vec![], forward(TG_A))],
            vec![unchecked(TG_A, a.target())],
        ),
    )
    .await;
    assert!(tokio::net::TcpStream::connect("127.0.0.36:8080")
        .await
        .is_err());
    for _ in 0..5 {
        assert_eq!(raw_exchange(&mut conn, "/").await, (200, "a".to_string()));
    }
    // The node's pooled connections to a survived version 3.
    assert_eq!(
        a.connections.load(std::sync::atomic::Ordering::SeqCst),
        after
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_targets_time_out_with_504_and_metrics_are_reported() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.61").await;
    let scrape: SocketAddr = "127.0.0.38:9101".parse().unwrap();
    let _node = start_node_options(&cp, &["127.0.0.37"], Duration::from_secs(1), Some(scrape));
    let mut l = listener("127.0.0.37", 8080, vec![], forward(TG_A));
    l.idle_timeout_secs = 1;
    cp.apply(1, config(vec![l], vec![group(TG_A, vec![a.target()])]))
        .await;
    let c = http_client("127.0.0.1");
    assert_eq!(
        get(&c, "http://127.0.0.37:8080/slow/4000").await.status,
        504
    );
    assert_eq!(
        get(&c, "http://127.0.0.37:8080/status/201").await.status,
        201
    );
    assert_eq!(
        get(&c, "http://127.0.0.37:8080/status/500").await.status,
        500
    );
    let totals = |m: &[NodeMessage], group: Option<&str>| {
        let mut t = (0, 0, 0, 0);
        for s in m.iter().flat_map(|m| match m {
            NodeMessage::Metrics { samples } => samples.clone(),
            _ => Vec::new(),
        }) {
            if s.target_group_arn.as_deref() == group {
                t.0 += s.request_count;
                t.1 += s.target_2xx;
                t.2 += s.target_5xx;
                t.3 += s.elb_5xx;
            }
        }
        t
    };
    let ok = cp
        .wait_for(|m| totals(m, Some(TG_A)) == (3, 1, 1, 1) && totals(m, None) == (3, 1, 1, 1))
        .await;
    assert!(
        ok,
        "{:?}",
        cp.messages()
            .iter()
            .filter(|m| matches!(m, NodeMessage::Metrics { .. }))
            .collect::<Vec<_>>()
    );
    // The same counts, summed since the node started, on its own /metrics.
    let text = get(&c, &format!("http://{scrape}/metrics")).await.body;
    for line in [
        "flotilla_lb_requests_total 3",
        "flotilla_lb_target_responses_total{class=\"2xx\"} 1",
        "flotilla_lb_target_responses_total{class=\"5xx\"} 1",
        "flotilla_lb_elb_5xx_total 1",
        "flotilla_lb_listeners 1",
        "flotilla_lb_targets{health=\"healthy\"} 1",
        "flotilla_lb_control_plane_connected 1",
        "flotilla_lb_config_version 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_closed_and_foreign_addresses_are_not_bound() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.91").await;
    let _node = start_node(&cp, &["127.0.0.41"]);
    let mut l = listener("127.0.0.41", 8080, vec![], forward(TG_A));
    l.idle_timeout_secs = 1;
    // 127.0.0.42 was not given to this node: it must not bind it.
    let foreign = listener("127.0.0.42", 8080, vec![], forward(TG_A));
    cp.apply(
        1,
        config(vec![l, foreign], vec![group(TG_A, vec![a.target()])]),
    )
    .await;
    assert!(tokio::net::TcpStream::connect("127.0.0.42:8080")
        .await
        .is_err());

    let mut conn = tokio::net::TcpStream::connect("127.0.0.41:8080")
        .await
        .unwrap();
    assert_eq!(raw_exchange(&mut conn, "/").await, (200, "a".to_string()));
    // Idle past the timeout: the node closes the connection.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut conn, &mut buf))
        .await
        .expect("closed within the bound");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_new_target_up_from_a_small_share() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.101").await;
    let b = Backend::start("b", "127.0.1.102").await;
    let _node = start_node(&cp, &["127.0.0.43"]);
    let l = || listener("127.0.0.43", 8080, vec![], forward(TG_A));
    cp.apply(1, config(vec![l()], vec![group(TG_A, vec![a.target()])]))
        .await;
    cp.wait_latest(a.addr, ObservedHealth::Healthy).await;
    // Slow start on (an hour, so the share stays near its 10 % floor for
    // the whole test), and a new target: a, already healthy, keeps its
    // full share; b ramps.
    let mut g = group(TG_A, vec![a.target(), b.target()]);
    g.slow_start_secs = 3600;
    cp.apply(2, config(vec![l()], vec![g])).await;
    cp.wait_latest(b.addr, ObservedHealth::Healthy).await;
    let c = http_client("127.0.0.1");
    let n = 400;
    for _ in 0..n {
        assert_eq!(get(&c, "http://127.0.0.43:8080/").await.status, 200);
    }
    // Round robin gives b half the turns; it takes about a tenth of them
    // (about 20 of 400). Without slow start it would take 200.
    let nb = b.requests();
    assert!((1..=80).contains(&nb), "b got {nb} of {n}");
    assert_eq!(a.requests() + nb, n);
}
