//! Property tests: a small simulator applies each plan, then lets the world
//! move (tasks start, run, fail, change health; the user changes the service),
//! and reconciles again.
//!
//! - `plans_never_break_the_bounds`: over random sequences of task starts,
//!   failures, health changes and configuration changes, no plan's stops take
//!   healthy RUNNING tasks below ceil(desired × min% / 100) and no plan's
//!   starts take RUNNING + PENDING (+ stopping) above floor(desired × max% /
//!   100) — or, where the world already broke a bound, the plan makes it no
//!   worse.
//! - `healthy_rollouts_complete`: a rollout whose tasks all become healthy
//!   reaches a steady state, with the bounds holding at every moment; a
//!   configuration with no room says so instead.
//! - `failing_rollouts_trip_the_breaker_at_the_threshold`: a rollout whose
//!   tasks always fail (never RUNNING, exit, or UNHEALTHY) is FAILED in the very
//!   reconcile that sees the threshold-th failure, starts nothing more, and with
//!   rollback returns to the old task definition and settles.
//! - `failing_rollouts_without_the_breaker_back_off`: no FAILED, but restarts
//!   slow down and the service says it cannot start tasks consistently.
//! - `killing_long_running_tasks_never_throttles`: tasks that ran past
//!   `START_WINDOW` and die, any number at once, are all replaced in the next
//!   reconcile, never held back by the restart backoff.
//! - `scale_in_balances_zones_then_instances`: over random placements, a
//!   scale-in takes a task from a zone only while that zone is among the
//!   fullest, and within a zone from an instance only while it is among the
//!   zone's fullest (so zones and instances end within one task of each
//!   other when they started so); on one instance, tasks not yet healthy go
//!   before healthy ones.

use std::collections::BTreeMap;

use flotilla_reconcile::*;
use proptest::prelude::*;

const DT: Time = 5.0;

fn is_healthy(t: &Task) -> bool {
    t.phase == TaskPhase::Running
        && (t.health == Health::Healthy || (t.health == Health::Unknown && !t.has_health_check))
}

fn occupies(t: &Task) -> bool {
    t.phase != TaskPhase::Stopped
}

fn is_live(t: &Task) -> bool {
    matches!(t.phase, TaskPhase::Pending | TaskPhase::Running)
}

struct Sim {
    svc: Service,
    now: Time,
    next_task: u64,
    next_deployment: u64,
    next_revision: u32,
    /// New tasks' task definitions have a container health check.
    health_check: bool,
    plans: Vec<Plan>,
}

impl Sim {
    /// A steady service: `desired` healthy tasks of a COMPLETED deployment of web:1.
    fn steady(desired: u32, min: u32, max: u32, health_check: bool, grace: Time) -> Sim {
        let mut sim = Sim {
            svc: Service {
                name: "web".into(),
                draining: false,
                desired_count: desired,
                minimum_healthy_percent: min,
                maximum_percent: max,
                circuit_breaker: None,
                health_check_grace_period: grace,
                deployments: vec![],
                tasks: vec![],
                last_completed_task_definition: Some("web:1".into()),
                was_steady: true,
                hold_previous: false,
            },
            now: 1000.0,
            next_task: 0,
            next_deployment: 0,
            next_revision: 2,
            health_check,
            plans: vec![],
        };
        let id = sim.new_deployment("web:1");
        let d = &mut sim.svc.deployments[0];
        d.rollout_state = RolloutState::Completed;
        (d.desired_count, d.running_count) = (desired, desired);
        for _ in 0..desired {
            sim.add_task(&id);
            let t = sim.svc.tasks.last_mut().unwrap();
            t.phase = TaskPhase::Running;
            t.started_at = Some(0.0);
            t.health = if health_check {
                Health::Healthy
            } else {
                Health::Unknown
            };
        }
        sim
    }

    fn new_deployment(&mut self, task_definition: &str) -> String {
        self.next_deployment += 1;
        let id = format!("ecs-svc/{}", self.next_deployment);
        for d in &mut self.svc.deployments {
            d.status = DeploymentStatus::Active;
        }
        self.svc.deployments.insert(
            0,
            Deployment {
                id: id.clone(),
                task_definition: task_definition.into(),
                status: DeploymentStatus::Primary,
                rollout_state: RolloutState::InProgress,
                failed_tasks: 0,
                created_at: self.now,
                desired_count: 0,
                running_count: 0,
                pending_count: 0,
            },
        );
        id
    }

    /// UpdateService with a new task definition revision; returns it.
    fn deploy(&mut self) -> String {
        let td = format!("web:{}", self.next_revision);
        self.next_revision += 1;
        self.new_deployment(&td);
        td
    }

    fn add_task(&mut self, deployment: &str) {
        self.next_task += 1;
        self.svc.tasks.push(Task {
            id: format!("t{}", self.next_task),
            deployment_id: deployment.into(),
            phase: TaskPhase::Pending,
            health: Health::Unknown,
            has_health_check: self.health_check,
            started_at: None,
            stop_cause: None,
            on_draining_instance: false,
            stopped_at: None,
            protected_until: None,
            // Round robin over four instances in two zones.
            instance: format!("i{}", self.next_task % 4),
            zone: Some(["a", "b"][(self.next_task % 2) as usize].into()),
        });
    }

    fn primary(&self) -> &Deployment {
        self.svc
            .deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
            .expect("a PRIMARY deployment")
    }

    /// Reconciles, checks the plan against the bounds, applies it.
    fn step(&mut self) -> Plan {
        let plan = reconcile(&self.svc, self.now);
        check_plan(&self.svc, &plan);
        self.apply(&plan);
        self.plans.push(plan.clone());
        plan
    }

    /// What the controller does with a plan.
    fn apply(&mut self, plan: &Plan) {
        for (id, reason) in &plan.stop {
            let t = self.svc.tasks.iter_mut().find(|t| t.id == *id).unwrap();
            t.phase = TaskPhase::Stopping;
            t.stop_cause = Some(if *reason == StopReason::Unhealthy {
                StopCause::Failed
            } else {
                StopCause::Intended
            });
        }
        for (deployment, n) in &plan.start {
            for _ in 0..*n {
                self.add_task(deployment);
            }
        }
        for u in &plan.update {
            let d = self
                .svc
                .deployments
                .iter_mut()
                .find(|d| d.id == u.id)
                .unwrap();
            d.desired_count = u.desired_count;
            d.running_count = u.running_count;
            d.pending_count = u.pending_count;
            d.failed_tasks = u.failed_tasks;
            d.rollout_state = u.rollout_state;
            if u.rollout_state == RolloutState::Completed {
                self.svc.last_completed_task_definition = Some(d.task_definition.clone());
            }
        }
        self.svc
            .deployments
            .retain(|d| !plan.remove.contains(&d.id));
        if let Some(td) = &plan.rollback_to {
            self.new_deployment(td);
        }
        self.svc.was_steady = plan.steady;
    }

    fn nth(&mut self, sel: usize, f: impl Fn(&Task) -> bool) -> Option<&mut Task> {
        let n = self.svc.tasks.iter().filter(|t| f(t)).count();
        if n == 0 {
            return None;
        }
        self.svc.tasks.iter_mut().filter(|t| f(t)).nth(sel % n)
    }

    /// One stage forward: PENDING → RUNNING → HEALTHY (with a health check),
    /// stopping → STOPPED.
    fn advance(now: Time, t: &mut Task) {
        match t.phase {
            TaskPhase::Pending => {
                t.phase = TaskPhase::Running;
                t.started_at = Some(now);
            }
            TaskPhase::Running if t.has_health_check && t.health == Health::Unknown => {
                t.health = Health::Healthy;
            }
            TaskPhase::Stopping => {
                t.phase = TaskPhase::Stopped;
                t.stopped_at = Some(now);
            }
            _ => {}
        }
    }

    fn fail(now: Time, t: &mut Task) {
        t.phase = TaskPhase::Stopped;
        t.stop_cause = Some(StopCause::Failed);
        t.stopped_at = Some(now);
    }

    fn apply_op(&mut self, op: &Op) {
        let now = self.now;
        match *op {
            Op::Advance(sel) => {
                if let Some(t) = self.nth(sel, occupies) {
                    Sim::advance(now, t);
                }
            }
            Op::AdvanceAll => {
                for t in &mut self.svc.tasks {
                    Sim::advance(now, t);
                }
            }
            Op::Fail(sel) => {
                if let Some(t) = self.nth(sel, is_live) {
                    Sim::fail(now, t);
                }
            }
            Op::Unhealthy(sel) => {
                if let Some(t) = self.nth(sel, |t| t.phase == TaskPhase::Running) {
                    t.health = Health::Unhealthy;
                }
            }
            Op::Healthy(sel) => {
                if let Some(t) =
                    self.nth(sel, |t| t.phase == TaskPhase::Running && t.has_health_check)
                {
                    t.health = Health::Healthy;
                }
            }
            Op::DrainInstance(sel) => {
                if let Some(t) = self.nth(sel, occupies) {
                    t.on_draining_instance = true;
                }
            }
            Op::Tick(s) => self.now += f64::from(s),
            Op::SetDesired(d) => self.svc.desired_count = d,
            Op::SetPercents(min, max) => {
                self.svc.minimum_healthy_percent = min;
                self.svc.maximum_percent = max;
            }
            Op::SetBreaker(b) => self.svc.circuit_breaker = b,
            Op::Deploy => {
                self.deploy();
            }
            Op::Delete => self.svc.draining = true,
        }
    }
}

/// The plan's own effect on the bounds: apply its stops (tasks become
/// stopping, still holding their host) and starts (new PENDING tasks).
fn check_plan(s: &Service, plan: &Plan) {
    let floor = min_healthy_tasks(s.desired_count, s.minimum_healthy_percent);
    let ceiling = max_tasks(s.desired_count, s.maximum_percent);
    let occupied = s.tasks.iter().filter(|t| occupies(t)).count() as u32;
    let healthy = s.tasks.iter().filter(|t| is_healthy(t)).count() as u32;
    let starts: u32 = plan.start.iter().map(|(_, n)| n).sum();

    let mut seen = std::collections::HashSet::new();
    let mut healthy_stops = 0;
    for (id, reason) in &plan.stop {
        assert!(seen.insert(id), "task {id} stopped twice");
        let t = s
            .tasks
            .iter()
            .find(|t| t.id == *id)
            .expect("stops a known task");
        assert!(is_live(t), "stops only PENDING or RUNNING tasks: {t:?}");
        assert_eq!(*reason == StopReason::ServiceDraining, s.draining);
        healthy_stops += u32::from(is_healthy(t));
    }
    if s.draining {
        assert_eq!(starts, 0, "a DRAINING service starts nothing");
        return;
    }
    assert!(
        starts == 0 || occupied + starts <= ceiling,
        "starts {starts} with {occupied} occupying take it over the ceiling {ceiling}"
    );
    assert!(
        healthy_stops == 0 || healthy - healthy_stops >= floor,
        "stops {healthy_stops} of {healthy} healthy, floor {floor}"
    );
    let primary = s
        .deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary);
    for (d, _) in &plan.start {
        assert_eq!(
            Some(d),
            primary.map(|p| &p.id),
            "starts only for the PRIMARY"
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(usize),
    AdvanceAll,
    Fail(usize),
    Unhealthy(usize),
    Healthy(usize),
    DrainInstance(usize),
    Tick(u16),
    SetDesired(u32),
    SetPercents(u32, u32),
    SetBreaker(Option<bool>),
    Deploy,
    Delete,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => any::<usize>().prop_map(Op::Advance),
        4 => Just(Op::AdvanceAll),
        3 => any::<usize>().prop_map(Op::Fail),
        2 => any::<usize>().prop_map(Op::Unhealthy),
        2 => any::<usize>().prop_map(Op::Healthy),
        1 => any::<usize>().prop_map(Op::DrainInstance),
        3 => (1u16..120).prop_map(Op::Tick),
        2 => (0u32..=10).prop_map(Op::SetDesired),
        2 => (0u32..=100, 50u32..=200).prop_map(|(a, b)| Op::SetPercents(a, b)),
        1 => prop_oneof![Just(None), Just(Some(false)), Just(Some(true))].prop_map(Op::SetBreaker),
        2 => Just(Op::Deploy),
        1 => (0u32..20).prop_map(|n| if n == 0 { Op::Delete } else { Op::AdvanceAll }),
    ]
}

/// Whether a rollout can replace its tasks at all: some room to start a task
/// above desired or some slack to stop one below it.
fn can_progress(desired: u32, min: u32, max: u32) -> bool {
    desired == 0 || max_tasks(desired, max) > desired || min_healthy_tasks(desired, min) < desired
}

/// After removing tasks one at a time from the fullest group, a group that
/// lost a task ends within one of the fullest group: checks that of the
/// counts `before` and `after`.
fn leveled<K: Ord + std::fmt::Debug>(
    what: &str,
    before: &BTreeMap<K, usize>,
    after: &BTreeMap<K, usize>,
) -> Result<(), TestCaseError> {
    let count = |m: &BTreeMap<K, usize>, k: &K| m.get(k).copied().unwrap_or(0);
    let fullest = before.keys().map(|k| count(after, k)).max().unwrap_or(0);
    for k in before.keys() {
        if count(after, k) < count(before, k) {
            prop_assert!(
                count(after, k) + 1 >= fullest,
                "{} {:?} lost tasks while not among the fullest: {:?} -> {:?}",
                what,
                k,
                before,
                after
            );
        }
    }
    Ok(())
}

/// A task of the settled service's deployment `d1` for the scale-in property.
fn placed(k: usize, zone: Option<u8>, instance: u8, pending: bool, started: Time) -> Task {
    let zone = zone.map(|z| format!("zone-{z}"));
    Task {
        id: format!("t{k:02}"),
        deployment_id: "d1".into(),
        phase: if pending {
            TaskPhase::Pending
        } else {
            TaskPhase::Running
        },
        health: Health::Unknown,
        has_health_check: false,
        started_at: (!pending).then_some(started),
        stop_cause: None,
        on_draining_instance: false,
        stopped_at: None,
        protected_until: None,
        // Instances belong to one zone: the zone is part of the name.
        instance: format!("{}/i{instance}", zone.as_deref().unwrap_or("none")),
        zone,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn scale_in_balances_zones_then_instances(
        sites in prop::collection::vec(
            (prop::option::weighted(0.9, 0u8..3), 0u8..3, prop::bool::weighted(0.25), 0u16..100),
            1..24,
        ),
        cut in 1usize..24,
        min in 0u32..=100,
    ) {
        let n = sites.len();
        let desired = n.saturating_sub(cut) as u32;
        let tasks: Vec<Task> = sites
            .iter()
            .enumerate()
            .map(|(k, &(zone, instance, pending, started))| placed(k, zone, instance, pending, f64::from(started)))
            .collect();
        // Balance is the whole rule only when the floor never holds a healthy
        // task back: with tasks still PENDING, take minimumHealthyPercent 0.
        let any_pending = tasks.iter().any(|t| t.phase == TaskPhase::Pending);
        let min = if any_pending { 0 } else { min };
        let svc = Service {
            name: "web".into(),
            draining: false,
            desired_count: desired,
            minimum_healthy_percent: min,
            maximum_percent: 200,
            circuit_breaker: None,
            health_check_grace_period: 0.0,
            deployments: vec![Deployment {
                id: "d1".into(),
                task_definition: "web:1".into(),
                status: DeploymentStatus::Primary,
                rollout_state: RolloutState::Completed,
                failed_tasks: 0,
                created_at: 0.0,
                desired_count: desired,
                running_count: 0,
                pending_count: 0,
            }],
            tasks: tasks.clone(),
            last_completed_task_definition: Some("web:1".into()),
            was_steady: false,
            hold_previous: false,
        };
        let plan = reconcile(&svc, 1000.0);
        check_plan(&svc, &plan);
        prop_assert!(plan.start.is_empty());
        prop_assert_eq!(plan.stop.len(), n - desired as usize, "{:?}", plan.stop);
        prop_assert!(plan.stop.iter().all(|(_, r)| *r == StopReason::ScaleIn));

        let gone = |t: &Task| plan.stop.iter().any(|(id, _)| *id == t.id);
        let tally = |keep: &dyn Fn(&Task) -> bool, key: &dyn Fn(&Task) -> String| {
            let mut m = BTreeMap::new();
            for t in tasks.iter().filter(|t| keep(t)) {
                *m.entry(key(t)).or_insert(0) += 1;
            }
            m
        };
        let zone = |t: &Task| format!("{:?}", t.zone);
        leveled("zone", &tally(&|_| true, &zone), &tally(&|t| !gone(t), &zone))?;
        let zones: Vec<String> = tally(&|_| true, &zone).into_keys().collect();
        for z in &zones {
            let here = |t: &Task| zone(t) == *z;
            let instance = |t: &Task| t.instance.clone();
            leveled("instance", &tally(&here, &instance), &tally(&|t| here(t) && !gone(t), &instance))?;
        }
        // On one instance, nothing healthy goes while a PENDING task stays.
        for t in tasks.iter().filter(|t| gone(t) && t.phase == TaskPhase::Running) {
            prop_assert!(
                !tasks.iter().any(|p| p.instance == t.instance && p.phase == TaskPhase::Pending && !gone(p)),
                "{} stopped while a PENDING task on {} stays", t.id, t.instance
            );
        }
    }

    #[test]
    fn killing_long_running_tasks_never_throttles(
        desired in 1u32..=8,
        min in 0u32..=100,
        max in 100u32..=200,
        health_check: bool,
        kills in prop::collection::vec((any::<u8>(), 1u16..300), 1..12),
    ) {
        let mut sim = Sim::steady(desired, min, max, health_check, 0.0);
        for &(mask, wait) in &kills {
            // Every task has run past the window; kill a random subset at once.
            sim.now += START_WINDOW + f64::from(wait);
            let now = sim.now;
            let mut killed = 0;
            for (k, t) in sim.svc.tasks.iter_mut().filter(|t| t.phase == TaskPhase::Running).enumerate() {
                if mask & (1 << (k % 8)) != 0 {
                    Sim::fail(now, t);
                    killed += 1;
                }
            }
            let plan = sim.step();
            let started: u32 = plan.start.iter().map(|(_, n)| n).sum();
            prop_assert_eq!(started, killed, "every killed task is replaced at once");
            prop_assert!(
                !plan.events.iter().any(|e| e.contains("unable to consistently start tasks")),
                "{:?}", plan.events
            );
            // The replacements start and turn healthy.
            for _ in 0..2 {
                let now = sim.now;
                for t in &mut sim.svc.tasks {
                    Sim::advance(now, t);
                }
                sim.step();
            }
        }
    }

    #[test]
    fn plans_never_break_the_bounds(
        desired in 0u32..=8,
        min in 0u32..=100,
        max in 50u32..=200,
        health_check: bool,
        grace in 0u16..=60,
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let mut sim = Sim::steady(desired, min, max, health_check, f64::from(grace));
        for op in &ops {
            sim.step();
            sim.apply_op(op);
            sim.now += 1.0;
        }
        sim.step();
    }

    #[test]
    fn healthy_rollouts_complete(
        desired in 0u32..=12,
        min in 0u32..=100,
        max in 100u32..=200,
        health_check: bool,
        grace in 0u16..=30,
        breaker in prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        lazy in prop::collection::vec(any::<bool>(), 1..64),
    ) {
        let mut sim = Sim::steady(desired, min, max, health_check, f64::from(grace));
        sim.svc.circuit_breaker = breaker;
        let td = sim.deploy();
        let floor = min_healthy_tasks(desired, min);
        let ceiling = max_tasks(desired, max);

        if !can_progress(desired, min, max) {
            let plan = sim.step();
            prop_assert!(plan.start.is_empty() && plan.stop.is_empty());
            prop_assert!(plan.events.iter().any(|e| e.contains("cannot make progress")), "{:?}", plan.events);
            return Ok(());
        }

        let limit = 40 * (desired as usize + 1);
        let mut steady_at = None;
        for step in 0..limit {
            // The bounds at every moment, not just per plan: this world never
            // breaks them on its own.
            let occupied = sim.svc.tasks.iter().filter(|t| occupies(t)).count() as u32;
            let healthy = sim.svc.tasks.iter().filter(|t| is_healthy(t)).count() as u32;
            prop_assert!(occupied <= ceiling, "step {}: {} tasks over {}", step, occupied, ceiling);
            prop_assert!(healthy >= floor, "step {}: {} healthy under {}", step, healthy, floor);

            let plan = sim.step();
            prop_assert!(plan.rollback_to.is_none());
            prop_assert!(!plan.events.iter().any(|e| e.contains("cannot make progress")), "{:?}", plan.events);
            if plan.steady {
                steady_at = Some(step);
                break;
            }
            // Each task moves on with the script's say-so, and every third
            // step all of them do.
            for (i, t) in sim.svc.tasks.iter_mut().enumerate() {
                if step % 3 == 0 || lazy[(i + step) % lazy.len()] {
                    Sim::advance(sim.now, t);
                }
            }
            sim.now += DT;
        }
        prop_assert!(steady_at.is_some(), "no steady state in {} steps", limit);
        let p = sim.primary().clone();
        prop_assert_eq!(&p.task_definition, &td);
        prop_assert_eq!(p.rollout_state, RolloutState::Completed);
        prop_assert_eq!(sim.svc.deployments.len(), 1);
        let live: Vec<&Task> = sim.svc.tasks.iter().filter(|t| occupies(t)).collect();
        prop_assert_eq!(live.len() as u32, desired);
        prop_assert!(live.iter().all(|t| is_healthy(t) && t.deployment_id == p.id));
        let steady_events = sim.plans.iter().flat_map(|p| &p.events)
            .filter(|e| e.ends_with("has reached a steady state.")).count();
        prop_assert_eq!(steady_events, 1);
        // And it stays put.
        let plan = sim.step();
        prop_assert!(plan.steady && plan.start.is_empty() && plan.stop.is_empty() && plan.events.is_empty());
    }

    #[test]
    fn failing_rollouts_trip_the_breaker_at_the_threshold(
        desired in 1u32..=30,
        min in 0u32..=100,
        max in 100u32..=200,
        health_check: bool,
        grace in 0u16..=30,
        rollback: bool,
        modes in prop::collection::vec(0u8..3, 1..16),
    ) {
        prop_assume!(can_progress(desired, min, max));
        let mut sim = Sim::steady(desired, min, max, health_check, f64::from(grace));
        sim.svc.circuit_breaker = Some(rollback);
        sim.deploy();
        let bad_id = sim.primary().id.clone();
        let threshold = breaker_threshold(desired);

        let mut tripped_at = None;
        for step in 0..3000 {
            let before = sim.svc.clone();
            let plan = sim.step();
            let update = plan.update.iter().find(|u| u.id == bad_id);
            let state = update.map_or_else(
                || before.deployments.iter().find(|d| d.id == bad_id).unwrap().rollout_state,
                |u| u.rollout_state,
            );
            // What the reconciler saw: stored failures, failed stops, and the
            // UNHEALTHY tasks this plan stops.
            let seen = before.tasks.iter().filter(|t| t.deployment_id == bad_id).filter(|t| {
                t.stop_cause == Some(StopCause::Failed)
                    || plan.stop.iter().any(|(id, r)| *id == t.id && *r == StopReason::Unhealthy)
            }).count() as u32;
            let seen = seen.max(before.deployments.iter().find(|d| d.id == bad_id).unwrap().failed_tasks);
            if tripped_at.is_none() {
                if seen >= threshold {
                    prop_assert_eq!(state, RolloutState::Failed, "step {}: {} failures seen", step, seen);
                    prop_assert_eq!(seen, threshold, "the world fails one task at a time");
                    prop_assert_eq!(update.unwrap().failed_tasks, threshold);
                    prop_assert_eq!(update.unwrap().rollout_state_reason.as_deref(),
                        Some("ECS deployment circuit breaker: tasks failed to start."));
                    prop_assert!(plan.start.is_empty());
                    prop_assert_eq!(plan.rollback_to.as_deref(), rollback.then_some("web:1"));
                    tripped_at = Some(step);
                    break;
                }
                prop_assert_eq!(state, RolloutState::InProgress, "step {}: tripped at {} of {}", step, seen, threshold);
            }
            // The world: old tasks are fine; the bad deployment's fail, one
            // failure in flight at a time, in the script's manner.
            let unhealthy_pending = sim.svc.tasks.iter().any(|t| {
                t.deployment_id == bad_id && t.phase == TaskPhase::Running && t.health == Health::Unhealthy
            });
            let mut failed_one = unhealthy_pending;
            let now = sim.now;
            for (i, t) in sim.svc.tasks.iter_mut().enumerate() {
                if t.deployment_id != bad_id || t.phase == TaskPhase::Stopping {
                    Sim::advance(now, t);
                    continue;
                }
                // Each of them fails before it ever looks healthy: it never
                // reaches RUNNING, or exits as it starts, or starts UNHEALTHY.
                if t.phase != TaskPhase::Pending || failed_one {
                    continue;
                }
                failed_one = true;
                match modes[i % modes.len()] {
                    0 => Sim::fail(now, t),
                    1 => {
                        t.started_at = Some(now);
                        Sim::fail(now, t);
                    }
                    _ => {
                        t.phase = TaskPhase::Running;
                        t.started_at = Some(now);
                        t.health = Health::Unhealthy;
                    }
                }
            }
            sim.now += DT;
        }
        prop_assert!(tripped_at.is_some(), "the breaker never tripped");
        prop_assert_eq!(sim.svc.deployments.iter().find(|d| d.id == bad_id).unwrap().rollout_state, RolloutState::Failed);

        // Afterwards the bad task definition gets no new task, and with
        // rollback the service settles on web:1 again.
        let bad_tasks = |s: &Sim| s.svc.tasks.iter().filter(|t| t.deployment_id == bad_id).count();
        let count = bad_tasks(&sim);
        let mut steady = false;
        for _ in 0..40 * (desired as usize + 1) {
            let plan = sim.step();
            prop_assert!(plan.rollback_to.is_none(), "one rollback only");
            if plan.steady {
                steady = true;
                break;
            }
            let now = sim.now;
            for t in &mut sim.svc.tasks {
                Sim::advance(now, t);
            }
            sim.now += DT;
        }
        prop_assert_eq!(bad_tasks(&sim), count, "no new task of the failed deployment");
        prop_assert_eq!(steady, rollback);
        if rollback {
            let p = sim.primary();
            prop_assert_eq!(p.task_definition.as_str(), "web:1");
            prop_assert_eq!(p.rollout_state, RolloutState::Completed);
            prop_assert_eq!(sim.svc.deployments.len(), 1);
        }
    }

    #[test]
    fn failing_rollouts_without_the_breaker_back_off(
        desired in 1u32..=6,
        min in 0u32..=100,
        max in 100u32..=200,
        health_check: bool,
    ) {
        prop_assume!(can_progress(desired, min, max));
        let mut sim = Sim::steady(desired, min, max, health_check, 0.0);
        sim.deploy();
        let bad_id = sim.primary().id.clone();
        let mut batches = 0;
        let mut throttled = false;
        // Ten simulated minutes.
        for _ in 0..120 {
            let plan = sim.step();
            prop_assert!(plan.update.iter().all(|u| u.rollout_state != RolloutState::Failed));
            batches += usize::from(!plan.start.is_empty());
            throttled |= plan.events.iter()
                .any(|e| e == "(service web) is unable to consistently start tasks successfully.");
            let now = sim.now;
            for t in &mut sim.svc.tasks {
                if t.deployment_id == bad_id && is_live(t) {
                    Sim::fail(now, t);
                } else {
                    Sim::advance(now, t);
                }
            }
            sim.now += DT;
        }
        prop_assert!(throttled);
        // Without backoff a batch would start every other step (60); with it
        // the delays double from 10 s: far fewer in ten minutes.
        prop_assert!(batches <= 12, "{} batches", batches);
        prop_assert_eq!(sim.primary().rollout_state, RolloutState::InProgress);
    }
}
