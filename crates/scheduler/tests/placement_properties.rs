//! Placement invariants under random clusters and random sequences of
//! placements, releases and status changes, through the public API the
//! server uses.
//!
//! - Never over-commit: every instance's remaining CPU/memory equals what it
//!   started with minus the live tasks on it, and no two live tasks (or a
//!   task and a port already in use) share a host port.
//! - Every placement is feasible at the moment it is made (status, agent,
//!   attributes, memberOf, distinctInstance, resources, ports), replayed on
//!   a shadow copy with the independent per-instance checker.
//! - Placement gives up only when nothing is feasible, with the summary
//!   explain() gives.
//! - The leading strategy is honoured: binpack picks the least remaining
//!   among feasible instances, spread the least loaded value.
//! - Default spread keeps zones, and instances within a zone, within one
//!   task of each other when capacity allows; scale-in keeps them so.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_scheduler::{
    check_instance, choose_tasks_to_stop, explain, place, summarize, ClusterView, Constraint,
    Demand, Expression, Instance, InstanceStatus, Resource, Resources, SpreadField,
    Strategy as Placing, TaskGroups, TaskRequest, TaskSite,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const ZONE: &str = "ecs.availability-zone";
const PORTS: [u16; 3] = [80, 443, 8080];

#[derive(Debug, Clone)]
struct Host {
    instance: Instance,
    groups: TaskGroups,
}

fn host(k: usize) -> impl Strategy<Value = Host> {
    (
        (0u32..=8).prop_map(|c| c * 512),
        (0u32..=8).prop_map(|m| m * 1024),
        prop::option::of(prop_oneof![Just("a"), Just("b"), Just("c")]),
        prop_oneof![Just("t3.large"), Just("m5.large")],
        prop_oneof![8 => Just(InstanceStatus::Active), 1 => Just(InstanceStatus::Draining), 1 => Just(InstanceStatus::Inactive)],
        prop_oneof![9 => Just(true), 1 => Just(false)],
        prop::collection::btree_set(prop::sample::select(PORTS.to_vec()), 0..2),
        prop::collection::vec((prop_oneof![Just("g1"), Just("g2"), Just("other")], 1u32..3), 0..2),
        0u32..3,
    )
        .prop_map(move |(cpu, mem, zone, itype, status, connected, ports, groups, used_frac)| {
            let mut i = Instance::new(format!("i{k}"), Resources::new(cpu, mem)).with_attribute("ecs.instance-type", itype);
            if let Some(z) = zone {
                i.attributes.insert(ZONE.into(), z.into());
            }
            // Some capacity already taken by tasks we do not track.
            i.remaining = Resources::new(cpu - cpu * used_frac / 4, mem - mem * used_frac / 4);
            i.status = status;
            i.agent_connected = connected;
            i.used_tcp_ports = ports;
            let groups: TaskGroups = groups.into_iter().collect();
            i.running_tasks_count = groups.iter().map(|(_, c)| c).sum();
            Host { instance: i, groups }
        })
}

fn cluster() -> impl Strategy<Value = Vec<Host>> {
    (1usize..12).prop_flat_map(|n| (0..n).map(host).collect::<Vec<_>>())
}

fn member_of() -> impl Strategy<Value = Constraint> {
    prop_oneof![
        Just("attribute:ecs.instance-type =~ t3.*"),
        Just("attribute:ecs.availability-zone in [a, b]"),
        Just("not(task:group == g1)"),
        Just("runningTasksCount < 3"),
        Just("attribute:ecs.availability-zone !exists || task:group != g2"),
    ]
    .prop_map(|e| Constraint::MemberOf(Expression::parse(e).unwrap()))
}

fn strategy() -> impl Strategy<Value = Placing> {
    prop_oneof![
        Just(Placing::Spread(SpreadField::Attribute(ZONE.into()))),
        Just(Placing::Spread(SpreadField::Instance)),
        Just(Placing::Binpack(Resource::Cpu)),
        Just(Placing::Binpack(Resource::Memory)),
        Just(Placing::Random),
    ]
}

fn request() -> impl Strategy<Value = TaskRequest> {
    (
        prop_oneof![Just("g1"), Just("g2")],
        (0u32..=4).prop_map(|c| c * 256),
        (0u32..=4).prop_map(|m| m * 512),
        prop::collection::btree_set(prop::sample::select(PORTS.to_vec()), 0..2),
        prop::option::of(Just(53u16)),
        any::<bool>(),
        prop::collection::vec(member_of(), 0..2),
        prop::collection::vec(strategy(), 0..3),
        prop::option::of(Just("ecs.instance-type")),
    )
        .prop_map(
            |(group, cpu, mem, tcp, udp, distinct, member, strategies, required)| {
                let mut r = TaskRequest::new(
                    group,
                    Demand {
                        tcp_ports: tcp.into_iter().collect(),
                        udp_ports: udp.into_iter().collect(),
                        ..Demand::new(cpu, mem)
                    },
                );
                if distinct {
                    r.constraints.push(Constraint::DistinctInstance);
                }
                r.constraints.extend(member);
                r.strategies = strategies;
                if let Some(name) = required {
                    r.required_attributes
                        .push(flotilla_scheduler::RequiredAttribute {
                            name: name.into(),
                            value: None,
                        });
                }
                r
            },
        )
}

#[derive(Debug, Clone)]
enum Op {
    Place(TaskRequest, usize),
    /// Release the live task at this index (modulo the live count).
    Release(usize),
    SetStatus(usize, InstanceStatus),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (request(), 1usize..6).prop_map(|(r, n)| Op::Place(r, n)),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (any::<usize>(), prop_oneof![Just(InstanceStatus::Active), Just(InstanceStatus::Draining)])
            .prop_map(|(i, s)| Op::SetStatus(i, s)),
    ]
}

struct Live {
    instance: String,
    group: String,
    demand: Demand,
}

/// Tasks of `group` per zone value over ACTIVE instances: what spread counts.
fn zone_loads(view: &ClusterView, group: &str) -> BTreeMap<Option<String>, u64> {
    let mut m = BTreeMap::new();
    for (i, g) in view.iter() {
        if i.status == InstanceStatus::Active {
            *m.entry(i.attribute(ZONE).map(str::to_owned)).or_default() +=
                u64::from(g.count(group));
        }
    }
    m
}

/// Replays one `place` call on `shadow`, checking each decision.
fn replay_and_check(
    shadow: &mut ClusterView,
    req: &TaskRequest,
    count: usize,
    plan: &flotilla_scheduler::Placement,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        plan.placed.len() + plan.unplaced.as_ref().map_or(0, |u| u.count),
        count
    );
    for (k, (task, id)) in plan.placed.iter().enumerate() {
        prop_assert_eq!(*task, k);
        prop_assert_eq!(
            check_instance(shadow, req, id),
            Some(None),
            "placed on an infeasible instance {}",
            id
        );
        let verdicts = explain(shadow, req);
        let feasible: Vec<&str> = verdicts
            .iter()
            .filter(|v| v.rejection.is_none())
            .map(|v| v.instance_id.as_str())
            .collect();
        prop_assert!(feasible.contains(&id.as_str()));
        // The chosen instance has the smallest strategy key among the
        // feasible ones, comparing every strategy up to the first random.
        let loads = zone_loads(shadow, &req.group);
        let key = |id: &str| -> Vec<u64> {
            let (i, g) = shadow.get(id).unwrap();
            req.strategies
                .iter()
                .take_while(|s| **s != Placing::Random)
                .map(|s| match s {
                    Placing::Binpack(Resource::Cpu) => u64::from(i.remaining.cpu),
                    Placing::Binpack(Resource::Memory) => u64::from(i.remaining.memory),
                    Placing::Spread(SpreadField::Instance) => u64::from(g.count(&req.group)),
                    Placing::Spread(SpreadField::Attribute(_)) => loads
                        .get(&i.attribute(ZONE).map(str::to_owned))
                        .copied()
                        .unwrap_or(0),
                    Placing::Random => unreachable!(),
                })
                .collect()
        };
        let best = feasible.iter().map(|f| key(f)).min().unwrap();
        prop_assert_eq!(
            key(id),
            best,
            "not the best-ranked feasible instance for {:?}",
            req.strategies
        );
        shadow
            .reserve(id, &req.group, &req.demand)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    if let Some(un) = &plan.unplaced {
        let verdicts = explain(shadow, req);
        prop_assert!(
            verdicts.iter().all(|v| v.rejection.is_some()),
            "gave up while an instance was feasible"
        );
        prop_assert_eq!(summarize(&verdicts), Some(un.reason.clone()));
        prop_assert_eq!(&un.verdicts, &verdicts);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_over_commits_and_every_placement_is_feasible(
        hosts in cluster(),
        ops in prop::collection::vec(op(), 1..24),
        seed in any::<u64>(),
    ) {
        let mut view = ClusterView::from_instances(hosts.iter().map(|h| (h.instance.clone(), h.groups.clone())));
        let start: BTreeMap<String, Host> = hosts.iter().map(|h| (h.instance.id.clone(), h.clone())).collect();
        let mut live: Vec<Live> = Vec::new();
        let mut rng = StdRng::seed_from_u64(seed);
        for op in ops {
            match op {
                Op::Place(req, count) => {
                    let mut shadow = view.clone();
                    let plan = place(&mut view, &req, count, &mut rng);
                    replay_and_check(&mut shadow, &req, count, &plan)?;
                    for (_, id) in plan.placed {
                        live.push(Live { instance: id, group: req.group.clone(), demand: req.demand.clone() });
                    }
                }
                Op::Release(k) => {
                    if !live.is_empty() {
                        let t = live.swap_remove(k % live.len());
                        view.release(&t.instance, &t.group, &t.demand).unwrap();
                    }
                }
                Op::SetStatus(k, status) => {
                    let id = format!("i{}", k % hosts.len());
                    view.set_status(&id, status).unwrap();
                }
            }
            // The ledger: what each instance started with, minus live tasks.
            for (id, h) in &start {
                let (now, groups) = view.get(id).unwrap();
                let mine: Vec<&Live> = live.iter().filter(|t| &t.instance == id).collect();
                let cpu: u32 = mine.iter().map(|t| t.demand.cpu).sum();
                let mem: u32 = mine.iter().map(|t| t.demand.memory).sum();
                prop_assert!(cpu <= h.instance.remaining.cpu && mem <= h.instance.remaining.memory, "over-committed {}", id);
                prop_assert_eq!(now.remaining, Resources::new(h.instance.remaining.cpu - cpu, h.instance.remaining.memory - mem));
                let mut tcp = h.instance.used_tcp_ports.clone();
                let mut udp = BTreeSet::new();
                for t in &mine {
                    for p in &t.demand.tcp_ports {
                        prop_assert!(tcp.insert(*p), "tcp port {} double-booked on {}", p, id);
                    }
                    for p in &t.demand.udp_ports {
                        prop_assert!(udp.insert(*p), "udp port {} double-booked on {}", p, id);
                    }
                }
                prop_assert_eq!(&now.used_tcp_ports, &tcp);
                prop_assert_eq!(&now.used_udp_ports, &udp);
                for g in ["g1", "g2"] {
                    let n = mine.iter().filter(|t| t.group == g).count() as u32;
                    prop_assert_eq!(groups.count(g), h.groups.count(g) + n);
                }
            }
        }
    }

    #[test]
    fn default_spread_balances_zones_and_instances(
        per_zone in prop::collection::vec(1usize..5, 2..5),
        batches in prop::collection::vec(1usize..12, 1..5),
        seed in any::<u64>(),
    ) {
        let mut view = ClusterView::new();
        for (z, n) in per_zone.iter().enumerate() {
            for k in 0..*n {
                let i = Instance::new(format!("z{z}-{k}"), Resources::new(1 << 20, 1 << 20)).with_attribute(ZONE, format!("zone-{z}"));
                view.upsert(i, TaskGroups::new());
            }
        }
        let mut req = TaskRequest::new("service:web", Demand::new(256, 512));
        req.strategies = Placing::service_default();
        let mut rng = StdRng::seed_from_u64(seed);
        for count in batches {
            let plan = place(&mut view, &req, count, &mut rng);
            prop_assert!(plan.unplaced.is_none());
            let loads = zone_loads(&view, "service:web");
            let (lo, hi) = (loads.values().min().unwrap(), loads.values().max().unwrap());
            prop_assert!(hi - lo <= 1, "zones out of balance: {:?}", loads);
            for z in 0..per_zone.len() {
                let counts: Vec<u32> = view.iter()
                    .filter(|(i, _)| i.attribute(ZONE) == Some(&format!("zone-{z}")))
                    .map(|(_, g)| g.count("service:web"))
                    .collect();
                let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                prop_assert!(hi - lo <= 1, "instances in zone-{} out of balance: {:?}", z, counts);
            }
        }
    }

    #[test]
    fn scale_in_takes_from_the_most_loaded_zone_and_instance(
        tasks in prop::collection::vec((0usize..3, 0usize..4), 0..40),
        n in 0usize..45,
    ) {
        let ids: Vec<String> = tasks.iter().map(|(z, i)| format!("z{z}-i{i}")).collect();
        let zones: Vec<String> = tasks.iter().map(|(z, _)| format!("z{z}")).collect();
        let sites: Vec<TaskSite> = (0..tasks.len()).map(|k| TaskSite { instance_id: &ids[k], zone: Some(&zones[k]) }).collect();
        let chosen = choose_tasks_to_stop(&sites, n);
        prop_assert_eq!(chosen.len(), n.min(tasks.len()));
        let unique: BTreeSet<_> = chosen.iter().collect();
        prop_assert_eq!(unique.len(), chosen.len());
        let mut left: Vec<bool> = vec![true; tasks.len()];
        for &c in &chosen {
            let zone_count = |z: &str| (0..tasks.len()).filter(|&k| left[k] && zones[k] == z).count();
            let inst_count = |i: &str| (0..tasks.len()).filter(|&k| left[k] && ids[k] == i).count();
            let max_zone = zones.iter().map(|z| zone_count(z)).max().unwrap();
            prop_assert_eq!(zone_count(&zones[c]), max_zone);
            let max_inst = (0..tasks.len()).filter(|&k| zones[k] == zones[c]).map(|k| inst_count(&ids[k])).max().unwrap();
            prop_assert_eq!(inst_count(&ids[c]), max_inst);
            left[c] = false;
        }
    }
}
