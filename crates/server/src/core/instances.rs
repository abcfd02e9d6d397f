//! Container instances: every change to one goes through [`put_instance`],
//! which stores it, refreshes the scheduler's view of it and publishes the
//! lifecycle event its status change means.

use flotilla_model::ecs;
use flotilla_model::lifecycle::InstanceStatus;

use super::events::{Event, InstanceRef};
use super::placement;
use super::state::{Account, Key, Tx};

/// Stores `instance` as instance `id` of `cluster` (registered or changed),
/// keeps the placement view current, and tells subscribers when it was
/// registered, started draining or was deregistered.
pub fn put_instance(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    cluster: &str,
    id: &str,
    instance: ecs::ContainerInstance,
) {
    let Some(c) = acct.clusters.get_mut(cluster) else {
        return;
    };
    let before = c.instances.get(id).map(|i| i.lifecycle());
    let after = instance.lifecycle();
    tx.put(Key::Instance(cluster, id), &instance);
    c.instances.insert(id.to_string(), instance);
    placement::sync_account_instance(acct, cluster, id);
    let event: Option<fn(InstanceRef) -> Event> = match (before, after) {
        (None | Some(InstanceStatus::Inactive), InstanceStatus::Active) => {
            Some(|instance| Event::InstanceRegistered { instance })
        }
        (Some(b), InstanceStatus::Draining) if b != InstanceStatus::Draining => {
            Some(|instance| Event::InstanceDraining { instance })
        }
        (Some(b), InstanceStatus::Inactive) if b != InstanceStatus::Inactive => {
            Some(|instance| Event::InstanceDeregistered { instance })
        }
        _ => None,
    };
    if let Some(event) = event {
        tx.emit(|| {
            event(InstanceRef {
                cluster: cluster.to_string(),
                id: id.to_string(),
            })
        });
    }
}
