//! Choosing which of a service's tasks to stop when it scales in.
//!
//! ECS keeps a spread service balanced on the way down as on the way up: it
//! removes from the zone with the most of the service's tasks, and within
//! it from the instance with the most. Doing that one task at a time keeps
//! zones (and instances within a zone) within one task of each other
//! whenever they started out that way.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Where one of the service's running tasks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskSite<'a> {
    pub instance_id: &'a str,
    /// The instance's `ecs.availability-zone`; tasks on instances without
    /// one count as one more zone.
    pub zone: Option<&'a str>,
}

struct Zone<'a> {
    count: usize,
    /// Instance order: most tasks first, then by id.
    order: BTreeSet<(Reverse<usize>, &'a str)>,
    /// Each instance's tasks (indices into the input), in input order.
    tasks: BTreeMap<&'a str, VecDeque<usize>>,
}

/// Picks up to `n` tasks to stop, as indices into `tasks`, in the order
/// they were chosen: each from the zone with the most tasks left, then the
/// instance in it with the most tasks left (ties: smaller zone name, smaller
/// instance id). Within an instance, earlier entries go first, so list the
/// tasks you would rather lose first (not yet healthy, newest…).
pub fn choose_tasks_to_stop(tasks: &[TaskSite<'_>], n: usize) -> Vec<usize> {
    let mut zones: BTreeMap<Option<&str>, Zone<'_>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let zone = zones.entry(t.zone).or_insert_with(|| Zone {
            count: 0,
            order: BTreeSet::new(),
            tasks: BTreeMap::new(),
        });
        zone.count += 1;
        zone.tasks.entry(t.instance_id).or_default().push_back(i);
    }
    let mut zone_order: BTreeSet<(Reverse<usize>, Option<&str>)> = BTreeSet::new();
    for (name, z) in zones.iter_mut() {
        for (id, ts) in &z.tasks {
            z.order.insert((Reverse(ts.len()), id));
        }
        zone_order.insert((Reverse(z.count), *name));
    }

    let mut chosen = Vec::with_capacity(n.min(tasks.len()));
    while chosen.len() < n {
        let Some((Reverse(zcount), zname)) = zone_order.pop_first() else {
            break;
        };
        let Some(zone) = zones.get_mut(&zname) else {
            break;
        };
        let Some((Reverse(icount), iid)) = zone.order.pop_first() else {
            break;
        };
        let Some(task) = zone.tasks.get_mut(iid).and_then(VecDeque::pop_front) else {
            break;
        };
        chosen.push(task);
        if icount > 1 {
            zone.order.insert((Reverse(icount - 1), iid));
        }
        zone.count -= 1;
        if zcount > 1 {
            zone_order.insert((Reverse(zcount - 1), zname));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site<'a>(instance_id: &'a str, zone: &'a str) -> TaskSite<'a> {
        TaskSite {
            instance_id,
            zone: Some(zone),
        }
    }

    #[test]
    fn removes_from_the_most_loaded_zone_and_instance_first() {
        // Zone a: i1 ×3, i2 ×1; zone b: i3 ×2.
        let tasks = [
            site("i1", "a"),
            site("i1", "a"),
            site("i2", "a"),
            site("i3", "b"),
            site("i1", "a"),
            site("i3", "b"),
        ];
        let chosen = choose_tasks_to_stop(&tasks, 3);
        // a has 4: take from i1 (3) → a 3, b 2; a again: i1 (2) vs i2 (1) → i1 → a 2, b 2;
        // tie on zones → "a": i1 (1) vs i2 (1) → i1 by id.
        assert_eq!(chosen, vec![0, 1, 4]);
    }

    #[test]
    fn keeps_zones_balanced_and_stops_when_out_of_tasks() {
        let tasks: Vec<_> = (0..9)
            .map(|k| site(["x", "y", "z"][k % 3], ["a", "b", "c"][k % 3]))
            .collect();
        let chosen = choose_tasks_to_stop(&tasks, 4);
        let mut per_zone = BTreeMap::new();
        for &i in &chosen {
            *per_zone.entry(tasks[i].zone).or_insert(0) += 1;
        }
        assert_eq!(
            per_zone.values().copied().collect::<Vec<_>>(),
            vec![2, 1, 1]
        );
        assert_eq!(choose_tasks_to_stop(&tasks, 100).len(), 9);
        assert!(choose_tasks_to_stop(&[], 3).is_empty());
        let none_zone = [TaskSite {
            instance_id: "q",
            zone: None,
        }];
        assert_eq!(choose_tasks_to_stop(&none_zone, 1), vec![0]);
    }
}
