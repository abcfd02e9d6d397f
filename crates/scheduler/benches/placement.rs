//! Placement cost at 10,000 instances (3 zones, mixed sizes, ~12 attributes
//! each, some load from other services already on them).
//!
//! `cargo bench -p flotilla-scheduler` prints, per scenario:
//! - single: `place(.., 1, ..)` calls, each one decision including the
//!   per-call setup (static filter, group counts): what one RunTask of one
//!   task, or a service replacing one task, costs. p50/p99 per call.
//! - batch of 10: RunTask's maximum; latency per call and per decision.
//! - batch of 1000: a service scaling out; decisions per second.
//!
//! Tasks are released again (oldest first) so the cluster stays at a steady
//! load instead of filling up during the run.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use flotilla_scheduler::{
    place, ClusterView, Constraint, Demand, Expression, Instance, Resource, Resources, Strategy,
    TaskGroups, TaskRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const INSTANCES: usize = 10_000;
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const TYPES: [(&str, u32, u32); 5] = [
    ("t3.medium", 2048, 3900),
    ("t3.large", 2048, 7800),
    ("m5.large", 2048, 7600),
    ("m5.xlarge", 4096, 15_500),
    ("c5.2xlarge", 8192, 15_300),
];

fn cluster(rng: &mut StdRng) -> ClusterView {
    let mut view = ClusterView::new();
    for k in 0..INSTANCES {
        let (itype, cpu, mem) = TYPES[rng.random_range(0..TYPES.len())];
        let mut i = Instance::new(
            format!("arn:aws:ecs:us-east-1:123456789012:container-instance/prod/{k:032x}"),
            Resources::new(cpu, mem),
        )
        .with_attribute("ecs.availability-zone", ZONES[k % 3])
        .with_attribute("ecs.instance-type", itype)
        .with_attribute("ecs.os-type", "linux")
        .with_attribute("ecs.os-family", "LINUX")
        .with_attribute("ecs.cpu-architecture", "x86_64")
        .with_attribute("ecs.ami-id", format!("ami-{:08x}", k % 7))
        .with_attribute("ecs.capability.docker-remote-api.1.44", "")
        .with_attribute("ecs.capability.task-eni", "")
        .with_attribute("com.amazonaws.ecs.capability.logging-driver.awslogs", "")
        .with_attribute("com.amazonaws.ecs.capability.task-iam-role", "")
        .with_attribute("team", ["payments", "search", "platform"][k % 3])
        .with_attribute("generation", format!("{}", k % 4));
        i.ec2_instance_id = Some(format!("i-{k:017x}"));
        i.agent_version = Some("1.82.1".into());
        i.registered_at = 1_700_000_000 + k as i64;
        i.used_tcp_ports.extend([22, 2375, 2376, 51678, 51679]);
        // Background load from ten other services.
        let mut groups = TaskGroups::new();
        let n = rng.random_range(0..4u32);
        for _ in 0..n {
            groups.add(&format!("service:other-{}", rng.random_range(0..10)), 1);
        }
        i.remaining = Resources::new(cpu - 256 * n, mem - 512 * n);
        i.running_tasks_count = n;
        view.upsert(i, groups);
    }
    view
}

struct Stats {
    per_call: Vec<Duration>,
    decisions: usize,
    total: Duration,
}

fn run(
    view: &mut ClusterView,
    req: &TaskRequest,
    count: usize,
    calls: usize,
    rng: &mut StdRng,
) -> Stats {
    let mut live: VecDeque<String> = VecDeque::new();
    let mut per_call = Vec::with_capacity(calls);
    let mut decisions = 0;
    let mut total = Duration::ZERO;
    for _ in 0..calls {
        let t = Instant::now();
        let plan = black_box(place(view, req, count, rng));
        let dt = t.elapsed();
        per_call.push(dt);
        total += dt;
        assert!(
            plan.unplaced.is_none(),
            "benchmark cluster ran out of room: {:?}",
            plan.unplaced.map(|u| u.reason)
        );
        decisions += plan.placed.len();
        live.extend(plan.placed.into_iter().map(|(_, id)| id));
        while live.len() > 4_000 {
            let id = live.pop_front().unwrap_or_default();
            view.release(&id, &req.group, &req.demand)
                .expect("placed instance exists");
        }
    }
    for id in live {
        view.release(&id, &req.group, &req.demand)
            .expect("placed instance exists");
    }
    Stats {
        per_call,
        decisions,
        total,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(label: &str, mut s: Stats, count: usize) {
    s.per_call.sort();
    let (p50, p99) = (percentile(&s.per_call, 0.50), percentile(&s.per_call, 0.99));
    println!(
        "  {label:<14} {:>10.0} decisions/s   per call p50 {:>8.1} µs  p99 {:>8.1} µs   per decision p50 {:>7.1} µs  p99 {:>7.1} µs",
        s.decisions as f64 / s.total.as_secs_f64(),
        us(p50),
        us(p99),
        us(p50) / count as f64,
        us(p99) / count as f64,
    );
}

fn scenario(name: &str, req: TaskRequest, view: &mut ClusterView, rng: &mut StdRng) {
    println!("{name}");
    // Warm up caches and the allocator.
    let _ = run(view, &req, 1, 200, rng);
    report("single", run(view, &req, 1, 3_000, rng), 1);
    report("batch of 10", run(view, &req, 10, 500, rng), 10);
    report("batch of 1000", run(view, &req, 1000, 10, rng), 1000);
}

fn main() {
    let mut rng = StdRng::seed_from_u64(2024);
    let t = Instant::now();
    let mut view = cluster(&mut rng);
    println!(
        "cluster: {INSTANCES} instances, {} zones, built in {:.1} ms\n",
        ZONES.len(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut web = TaskRequest::new("service:web", Demand::new(256, 512));
    web.strategies = Strategy::service_default();
    scenario(
        "spread(attribute:ecs.availability-zone), spread(instanceId)  [service default]",
        web.clone(),
        &mut view,
        &mut rng,
    );

    let mut packed = TaskRequest::new("service:batch", Demand::new(256, 512));
    packed.strategies = vec![Strategy::Binpack(Resource::Memory)];
    scenario("binpack(memory)", packed, &mut view, &mut rng);

    let mut member = web.clone();
    member.group = "service:api".into();
    member.constraints = vec![Constraint::MemberOf(
        Expression::parse("attribute:ecs.instance-type =~ m5.* && attribute:team != search")
            .unwrap(),
    )];
    scenario("memberOf(attribute:ecs.instance-type =~ m5.* && attribute:team != search) + default spread", member, &mut view, &mut rng);

    let mut distinct = web.clone();
    distinct.group = "service:edge".into();
    distinct.constraints = vec![
        Constraint::DistinctInstance,
        Constraint::MemberOf(Expression::parse("not(task:group == service:other-3)").unwrap()),
    ];
    scenario(
        "distinctInstance + memberOf(not(task:group == service:other-3)) + default spread",
        distinct,
        &mut view,
        &mut rng,
    );

    let t = Instant::now();
    let filter = Expression::parse(
        "attribute:ecs.availability-zone in [us-east-1a, us-east-1b] && attribute:generation >= 2",
    )
    .unwrap();
    let n = 200;
    let mut hits = 0;
    for _ in 0..n {
        hits = black_box(view.filter(&filter)).len();
    }
    println!(
        "\nListContainerInstances filter over {INSTANCES} instances: {:.1} µs per call ({hits} matches)",
        us(t.elapsed()) / f64::from(n)
    );
}
