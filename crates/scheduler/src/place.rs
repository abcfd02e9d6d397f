//! Placing tasks: feasibility, then ranking by the strategies, one task at
//! a time, reserving on the view after each.
//!
//! Ranking is a lexicographic key per feasible instance, smallest wins:
//!
//! | strategy                 | key component                                   |
//! |--------------------------|-------------------------------------------------|
//! | `spread(attribute:a)`    | tasks of the group on instances with this `a`   |
//! | `spread(instanceId)`     | tasks of the group on this instance             |
//! | `binpack(cpu / memory)`  | CPU / memory left on the instance               |
//! | `random`                 | a fresh pseudo-random number per decision       |
//!
//! Ties go to the first instance in a scan order rotated by a per-batch
//! random offset, rather than to "the first instance", so that services with
//! the same strategy do not all pile onto the same few hosts. Everything
//! random derives from one draw of the caller's RNG, so a seeded RNG makes
//! placement fully deterministic.
//!
//! Cost per batch: one pass over the instances for the checks a placement
//! cannot change (status, agent, attributes, memberOf: attribute predicates
//! are evaluated once per distinct value), bucketing the survivors by the
//! leading spread attribute, and a dense copy of the group's per-instance
//! counts. Cost per decision, all exact (the result is the true minimum):
//! - buckets are visited from the fewest tasks up, and a bucket with more
//!   tasks than the best found so far ends the scan;
//! - each component has a lower bound (the bucket's count, the smallest
//!   per-instance count in the group, the demand itself for binpack); an
//!   instance that reaches all of them ends the scan, because nothing can
//!   beat it and ties go to the first found. For spreads this usually
//!   happens within a few instances.
//! - otherwise a scan over the bucket's candidates reading a few packed
//!   arrays; spread counts are maintained incrementally, never recounted.
//!   `binpack` and `random` always scan every candidate.

use rand_core::RngCore;

use crate::feasibility::{explain, summarize, Filter, Unplaceable, Verdict};
use crate::request::{Resource, SpreadField, Strategy, TaskRequest};
use crate::view::ClusterView;

/// The result of [`place`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `(task index in 0..count, instance id)`, in placement order.
    pub placed: Vec<(usize, String)>,
    /// Set when fewer than `count` tasks were placed.
    pub unplaced: Option<Unplaced>,
}

/// The tasks that did not fit, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// How many of the requested tasks were not placed (the last ones).
    pub count: usize,
    /// The one reason ECS reports for them.
    pub reason: Unplaceable,
    /// Every instance's verdict at the moment placement stopped, for
    /// operators and service events.
    pub verdicts: Vec<Verdict>,
}

/// Places up to `count` tasks of `req`, one at a time, each on the best
/// feasible instance, reserving its demand on `view` before the next
/// decision. Stops at the first task that fits nowhere: the view only
/// changes through placements, so later tasks of the batch would not fit
/// either.
pub fn place<R: RngCore + ?Sized>(
    view: &mut ClusterView,
    req: &TaskRequest,
    count: usize,
    rng: &mut R,
) -> Placement {
    let mut placed = Vec::with_capacity(count.min(1024));
    if count == 0 {
        return Placement {
            placed,
            unplaced: None,
        };
    }
    let seed = rng.next_u64();
    let mut batch = Batch::new(view, req, seed);
    for task in 0..count {
        let Some(i) = batch.best(view, task as u64) else {
            let verdicts = explain(view, req);
            let reason = summarize(&verdicts).unwrap_or(Unplaceable::NoInstances);
            return Placement {
                placed,
                unplaced: Some(Unplaced {
                    count: count - task,
                    reason,
                    verdicts,
                }),
            };
        };
        view.reserve_at(i, &req.group, &req.demand);
        batch.after_reserve(view, i);
        placed.push((task, view.instance(i).id.clone()));
    }
    Placement {
        placed,
        unplaced: None,
    }
}

/// ECS allows at most five strategies (checked at parse time); a key has one
/// component per strategy.
const KEY_LEN: usize = crate::request::MAX_STRATEGIES;

type Key = [u64; KEY_LEN];

enum Component {
    /// Index into `Batch::spreads`.
    SpreadAttribute(usize),
    SpreadInstance,
    Binpack(Resource),
    Random,
}

struct SpreadCounts {
    attribute: String,
    /// Tasks of the group per value id (0 = instances without the attribute).
    counts: Vec<u64>,
}

/// Candidates scanned together: all of them, or those with one value of a
/// leading spread attribute. Rotated by a per-batch random offset, which is
/// the tie-break: among equal keys the first scanned wins.
struct ScanGroup {
    value: u32,
    members: Vec<u32>,
}

struct Batch<'r> {
    filter: Filter<'r>,
    req: &'r TaskRequest,
    scan: Vec<ScanGroup>,
    /// The first strategy is a spread over an attribute and `scan` holds one
    /// group per value of it.
    bucketed: bool,
    components: Vec<Component>,
    spreads: Vec<SpreadCounts>,
    /// Tasks of the group per instance, dense.
    group_counts: Vec<u32>,
    /// Histogram of `group_counts` over the candidates and its minimum: the
    /// lower bound for `spread(instanceId)`. Empty when no strategy uses it.
    histogram: Vec<u32>,
    histogram_min: u32,
    order_seed: u64,
    random_seed: u64,
}

impl<'r> Batch<'r> {
    fn new(view: &ClusterView, req: &'r TaskRequest, seed: u64) -> Self {
        // The filter owns its masks, so it lives across the reservations
        // made on the view between decisions.
        let filter = Filter::new(view, req, true);
        let n = view.len();
        let order_seed = mix(seed, 0x6f72_6465_7221_2121); // "order!!!"
        let random_seed = mix(seed, 0x7261_6e64_6f6d_2121); // "random!!"

        let mut group_counts = vec![0u32; n];
        if let Some(members) = view.members(&req.group) {
            for (&i, &c) in members {
                group_counts[i] = c;
            }
        }

        let mut spreads = Vec::new();
        let components = req
            .strategies
            .iter()
            .map(|s| match s {
                Strategy::Spread(SpreadField::Attribute(a)) => {
                    spreads.push(SpreadCounts {
                        attribute: a.clone(),
                        counts: spread_counts(view, &req.group, a),
                    });
                    Component::SpreadAttribute(spreads.len() - 1)
                }
                Strategy::Spread(SpreadField::Instance) => Component::SpreadInstance,
                Strategy::Binpack(r) => Component::Binpack(*r),
                Strategy::Random => Component::Random,
            })
            .collect::<Vec<_>>();

        // One pass over the instances for everything a placement in this
        // batch cannot change.
        let bucketed = matches!(components.first(), Some(Component::SpreadAttribute(_)));
        let column = if bucketed {
            view.column(&spreads[0].attribute)
        } else {
            None
        };
        let mut by_value: Vec<Vec<u32>> = vec![Vec::new(); column.map_or(1, |c| c.id_space())];
        for i in (0..n).filter(|&i| filter.passes_static(view, i)) {
            let value = column.map_or(0, |c| c.id(i)) as usize;
            by_value[value].push(i as u32);
        }
        let scan: Vec<ScanGroup> = by_value
            .into_iter()
            .enumerate()
            .filter(|(_, members)| !members.is_empty())
            .map(|(value, mut members)| {
                let offset = (mix(order_seed, value as u64) % members.len() as u64) as usize;
                members.rotate_left(offset);
                ScanGroup {
                    value: value as u32,
                    members,
                }
            })
            .collect();

        let mut histogram = Vec::new();
        if components
            .iter()
            .any(|c| matches!(c, Component::SpreadInstance))
        {
            for g in &scan {
                for &m in &g.members {
                    let c = group_counts[m as usize] as usize;
                    if histogram.len() <= c {
                        histogram.resize(c + 1, 0);
                    }
                    histogram[c] += 1;
                }
            }
        }
        let histogram_min = histogram.iter().position(|&h| h > 0).unwrap_or(0) as u32;

        Batch {
            filter,
            req,
            scan,
            bucketed,
            components,
            spreads,
            group_counts,
            histogram,
            histogram_min,
            order_seed,
            random_seed,
        }
    }

    fn key(
        &self,
        view: &ClusterView,
        cols: &[Option<&crate::view::Column>],
        i: usize,
        decision: u64,
    ) -> Key {
        let mut key = [0u64; KEY_LEN];
        for (slot, c) in key.iter_mut().zip(&self.components) {
            *slot = match c {
                Component::SpreadAttribute(k) => {
                    let id = cols[*k].map_or(0, |col| col.id(i));
                    self.spreads[*k]
                        .counts
                        .get(id as usize)
                        .copied()
                        .unwrap_or(0)
                }
                Component::SpreadInstance => u64::from(self.group_counts[i]),
                Component::Binpack(Resource::Cpu) => u64::from(view.cpu_left[i]),
                Component::Binpack(Resource::Memory) => u64::from(view.mem_left[i]),
                Component::Random => mix(mix(self.random_seed, decision), i as u64),
            };
        }
        key
    }

    /// A key no feasible candidate can beat: reaching it ends the scan.
    fn floor(&self) -> Key {
        let mut floor = [0u64; KEY_LEN];
        for (slot, c) in floor.iter_mut().zip(&self.components) {
            *slot = match c {
                Component::SpreadAttribute(k) => {
                    self.spreads[*k].counts.iter().copied().min().unwrap_or(0)
                }
                Component::SpreadInstance => u64::from(self.histogram_min),
                // Remaining after placement is never negative.
                Component::Binpack(Resource::Cpu) => u64::from(self.req.demand.cpu),
                Component::Binpack(Resource::Memory) => u64::from(self.req.demand.memory),
                // Keys are random; never stop early.
                Component::Random => 0,
            };
        }
        floor
    }

    /// The best feasible instance for the next task, if any: the smallest
    /// key, ties to the first scanned.
    fn best(&self, view: &ClusterView, decision: u64) -> Option<usize> {
        let cols: Vec<Option<&crate::view::Column>> = self
            .spreads
            .iter()
            .map(|s| view.column(&s.attribute))
            .collect();
        let mut floor = self.floor();
        let mut best: Option<(Key, usize)> = None;
        let count_of = |g: &ScanGroup| {
            self.spreads
                .first()
                .map_or(0, |s| s.counts.get(g.value as usize).copied().unwrap_or(0))
        };
        let mut order: Vec<&ScanGroup> = self.scan.iter().collect();
        if self.bucketed {
            // Fewest tasks first; equal counts in a random order, so zones
            // tied on count take turns being first.
            order.sort_by_cached_key(|g| {
                (
                    count_of(g),
                    mix(self.order_seed ^ decision, u64::from(g.value)),
                )
            });
        }
        for group in order {
            if self.bucketed {
                let count = count_of(group);
                // Every later group has at least this many: none can win.
                if best.is_some_and(|(k, _)| count > k[0]) {
                    break;
                }
                floor[0] = count;
            }
            for &m in &group.members {
                let i = m as usize;
                if !self.filter.passes_dynamic(view, i, self.group_counts[i]) {
                    continue;
                }
                let key = self.key(view, &cols, i, decision);
                if best.is_none_or(|(k, _)| key < k) {
                    if key == floor {
                        return Some(i);
                    }
                    best = Some((key, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    fn after_reserve(&mut self, view: &ClusterView, i: usize) {
        let before = self.group_counts[i] as usize;
        self.group_counts[i] += 1;
        if !self.histogram.is_empty() {
            self.histogram[before] -= 1;
            if self.histogram.len() <= before + 1 {
                self.histogram.push(0);
            }
            self.histogram[before + 1] += 1;
            while self.histogram.get(self.histogram_min as usize) == Some(&0) {
                self.histogram_min += 1;
            }
        }
        for s in &mut self.spreads {
            let id = view.column(&s.attribute).map_or(0, |c| c.id(i)) as usize;
            if let Some(c) = s.counts.get_mut(id) {
                *c += 1;
            }
        }
        self.filter.refresh(view, i);
    }
}

/// Tasks of `group` per value of `attribute`, over ACTIVE instances (tasks
/// on draining instances are on their way out and should not skew the
/// spread of their replacements).
fn spread_counts(view: &ClusterView, group: &str, attribute: &str) -> Vec<u64> {
    let col = view.column(attribute);
    let mut counts = vec![0u64; col.map_or(1, |c| c.id_space())];
    if let Some(members) = view.members(group) {
        for (&i, &c) in members {
            if view.instance(i).status == crate::instance::InstanceStatus::Active {
                let id = col.map_or(0, |col| col.id(i)) as usize;
                counts[id] += u64::from(c);
            }
        }
    }
    counts
}

/// SplitMix64's finaliser over `a ^ f(b)`: cheap, well-mixed, and stateless,
/// so a key can be recomputed for any instance at any time.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cql::Expression;
    use crate::instance::{Instance, InstanceStatus, Resources, TaskGroups};
    use crate::request::{Constraint, Demand};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::BTreeMap;

    fn inst(id: &str, az: &str, cpu: u32, mem: u32) -> Instance {
        Instance::new(id, Resources::new(cpu, mem)).with_attribute("ecs.availability-zone", az)
    }

    fn view(instances: Vec<Instance>) -> ClusterView {
        ClusterView::from_instances(instances.into_iter().map(|i| (i, TaskGroups::new())))
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn hosts(p: &Placement) -> Vec<&str> {
        p.placed.iter().map(|(_, h)| h.as_str()).collect()
    }

    fn tally(p: &Placement) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for h in hosts(p) {
            *m.entry(h).or_default() += 1;
        }
        m
    }

    #[test]
    fn distinct_instance_lands_on_distinct_instances() {
        let mut v = view(
            (0..10)
                .map(|k| inst(&format!("i{k}"), "z", 4096, 8192))
                .collect(),
        );
        let mut req = TaskRequest::new("service:web", Demand::new(10, 10));
        req.constraints = vec![Constraint::DistinctInstance];
        let p = place(&mut v, &req, 10, &mut rng());
        assert_eq!(tally(&p).len(), 10, "{p:?}");
        assert!(p.unplaced.is_none());
        let p = place(&mut v, &req, 1, &mut rng());
        let un = p.unplaced.unwrap();
        assert_eq!(
            un.reason.reason(),
            "DistinctInstance placement constraint unsatisfied"
        );
        assert_eq!(un.count, 1);
        assert_eq!(un.verdicts.len(), 10);
    }

    #[test]
    fn binpack_memory_fills_the_fullest_instance_that_fits() {
        let mut v = view(vec![
            inst("big", "z", 4096, 4096),
            inst("small", "z", 4096, 1024),
            inst("tiny", "z", 4096, 200),
        ]);
        let mut req = TaskRequest::new("g", Demand::new(1, 256));
        req.strategies = vec![Strategy::Binpack(Resource::Memory)];
        let p = place(&mut v, &req, 5, &mut rng());
        assert_eq!(
            hosts(&p),
            vec!["small", "small", "small", "small", "big"],
            "tiny cannot fit 256"
        );
    }

    #[test]
    fn binpack_cpu_ties_are_broken_by_the_next_strategy() {
        let mut a = inst("a", "z", 1024, 4096);
        a.used_tcp_ports.insert(1); // irrelevant, just different
        let b = inst("b", "z", 1024, 2048);
        let mut v = view(vec![a, b]);
        let mut req = TaskRequest::new("g", Demand::new(256, 256));
        req.strategies = vec![
            Strategy::Binpack(Resource::Cpu),
            Strategy::Binpack(Resource::Memory),
        ];
        let p = place(&mut v, &req, 1, &mut rng());
        assert_eq!(hosts(&p), vec!["b"], "equal cpu, b has less memory left");
    }

    #[test]
    fn default_service_strategy_balances_zones_then_instances() {
        let mut instances = Vec::new();
        for (z, n) in [("a", 1), ("b", 2), ("c", 3)] {
            for k in 0..n {
                instances.push(inst(&format!("{z}{k}"), z, 8192, 8192));
            }
        }
        let mut v = view(instances);
        let mut req = TaskRequest::new("service:web", Demand::new(10, 10));
        req.strategies = Strategy::service_default();
        let p = place(&mut v, &req, 9, &mut rng());
        let t = tally(&p);
        let zone_total = |z: &str| {
            t.iter()
                .filter(|(h, _)| h.starts_with(z))
                .map(|(_, c)| c)
                .sum::<usize>()
        };
        assert_eq!(
            (zone_total("a"), zone_total("b"), zone_total("c")),
            (3, 3, 3)
        );
        assert_eq!(t["a0"], 3);
        assert!(
            t["b0"].abs_diff(t["b1"]) <= 1 && t["c0"] == 1 && t["c1"] == 1 && t["c2"] == 1,
            "{t:?}"
        );
    }

    #[test]
    fn spread_counts_existing_tasks_of_the_group_only() {
        let mut v = ClusterView::from_instances([
            (
                inst("a", "za", 8192, 8192),
                [("service:web", 3), ("service:other", 9)]
                    .into_iter()
                    .collect(),
            ),
            (
                inst("b", "zb", 8192, 8192),
                [("service:other", 1)].into_iter().collect(),
            ),
        ]);
        let mut req = TaskRequest::new("service:web", Demand::new(1, 1));
        req.strategies = vec![Strategy::Spread(SpreadField::Attribute(
            "ecs.availability-zone".into(),
        ))];
        let p = place(&mut v, &req, 3, &mut rng());
        assert_eq!(hosts(&p), vec!["b", "b", "b"]);
        let p = place(&mut v, &req, 2, &mut rng());
        assert_eq!(tally(&p).len(), 2, "3-3 now: one each");
    }

    #[test]
    fn spread_without_the_attribute_treats_missing_as_a_value() {
        let mut v = view(vec![
            inst("a", "za", 100, 100),
            Instance::new("bare", Resources::new(100, 100)),
        ]);
        let mut req = TaskRequest::new("g", Demand::new(1, 1));
        req.strategies = vec![Strategy::Spread(SpreadField::Attribute(
            "ecs.availability-zone".into(),
        ))];
        let p = place(&mut v, &req, 4, &mut rng());
        assert_eq!(tally(&p).values().copied().collect::<Vec<_>>(), vec![2, 2]);
    }

    #[test]
    fn random_is_deterministic_for_a_seed_and_spreads_over_candidates() {
        let mk = || {
            view(
                (0..20)
                    .map(|k| inst(&format!("i{k:02}"), "z", 100_000, 100_000))
                    .collect(),
            )
        };
        let mut req = TaskRequest::new("g", Demand::new(1, 1));
        req.strategies = vec![Strategy::Random];
        let p1 = place(&mut mk(), &req, 200, &mut StdRng::seed_from_u64(1));
        let p2 = place(&mut mk(), &req, 200, &mut StdRng::seed_from_u64(1));
        let p3 = place(&mut mk(), &req, 200, &mut StdRng::seed_from_u64(2));
        assert_eq!(p1, p2);
        assert_ne!(p1, p3);
        let t = tally(&p1);
        assert_eq!(t.len(), 20, "200 random draws over 20 hosts hit every host");
        assert!(t.values().all(|&c| c < 30), "{t:?}");
    }

    #[test]
    fn member_of_restricts_and_reports() {
        let mut v = view(vec![
            inst("t3a", "z", 1024, 1024).with_attribute("ecs.instance-type", "t3.large"),
            inst("m5a", "z", 1024, 1024).with_attribute("ecs.instance-type", "m5.large"),
        ]);
        let mut req = TaskRequest::new("g", Demand::new(512, 512));
        req.constraints = vec![Constraint::MemberOf(
            Expression::parse("attribute:ecs.instance-type =~ t3.*").unwrap(),
        )];
        let p = place(&mut v, &req, 3, &mut rng());
        assert_eq!(hosts(&p), vec!["t3a", "t3a"]);
        let un = p.unplaced.unwrap();
        assert_eq!(un.count, 1);
        match &un.reason {
            Unplaceable::Rejected {
                instance_id,
                rejection,
            } => {
                assert_eq!(
                    instance_id, "t3a",
                    "the matching but full instance is the closest"
                );
                assert_eq!(rejection.reason(), "RESOURCE:CPU");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn member_of_on_task_groups_is_re_evaluated_within_a_batch() {
        let mut v = view(
            (0..3)
                .map(|k| inst(&format!("i{k}"), "z", 8192, 8192))
                .collect(),
        );
        let mut req = TaskRequest::new("family:db", Demand::new(1, 1));
        req.constraints = vec![Constraint::MemberOf(
            Expression::parse("not(task:group == family:db)").unwrap(),
        )];
        let p = place(&mut v, &req, 5, &mut rng());
        assert_eq!(p.placed.len(), 3);
        assert_eq!(
            p.unplaced.unwrap().reason.reason(),
            "MemberOf placement constraint unsatisfied"
        );
        let mut req = TaskRequest::new("g", Demand::new(1, 1));
        req.constraints = vec![Constraint::MemberOf(
            Expression::parse("runningTasksCount < 2").unwrap(),
        )];
        let p = place(&mut v, &req, 10, &mut rng());
        assert_eq!(p.placed.len(), 3, "each host had 1 task, takes 1 more");
    }

    #[test]
    fn draining_and_disconnected_instances_get_nothing() {
        let mut d = inst("draining", "z", 8192, 8192);
        d.status = InstanceStatus::Draining;
        let mut v = view(vec![d]);
        let req = TaskRequest::new("g", Demand::new(1, 1));
        let p = place(&mut v, &req, 1, &mut rng());
        assert_eq!(p.unplaced.unwrap().reason, Unplaceable::NoInstances);
        let mut x = inst("x", "z", 8192, 8192);
        x.agent_connected = false;
        v.upsert(x, TaskGroups::new());
        let p = place(&mut v, &req, 2, &mut rng());
        let un = p.unplaced.unwrap();
        assert_eq!((un.count, un.reason.reason()), (2, "AGENT"));
        let p = place(&mut ClusterView::new(), &req, 1, &mut rng());
        assert_eq!(p.unplaced.unwrap().reason, Unplaceable::NoInstances);
    }

    #[test]
    fn ports_are_reserved_within_a_batch() {
        let mut v = view(vec![inst("a", "z", 8192, 8192), inst("b", "z", 8192, 8192)]);
        let req = TaskRequest::new(
            "g",
            Demand {
                tcp_ports: vec![80],
                ..Demand::new(1, 1)
            },
        );
        let p = place(&mut v, &req, 3, &mut rng());
        assert_eq!(tally(&p).len(), 2);
        assert_eq!(p.unplaced.unwrap().reason.reason(), "RESOURCE:PORTS");
    }

    #[test]
    fn zero_tasks_is_a_no_op() {
        let mut v = view(vec![inst("a", "z", 1, 1)]);
        let p = place(
            &mut v,
            &TaskRequest::new("g", Demand::new(1, 1)),
            0,
            &mut rng(),
        );
        assert!(p.placed.is_empty() && p.unplaced.is_none());
    }
}
