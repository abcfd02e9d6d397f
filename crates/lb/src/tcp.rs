//! Network load balancer listeners: each accepted connection (flow) goes
//! to one target chosen by a hash of its 5-tuple over the healthy targets
//! (all active ones when none is healthy), and bytes are spliced both ways
//! until either side closes or the target's deregistration delay ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::Shared;

/// How long connecting to a target may take before the flow is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve_flow(
    shared: Arc<Shared>,
    mut client: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
) {
    let (target, lb_counters, group_counters) = {
        let table = shared.table.load();
        let Some(listener) = table.listeners.get(&local) else {
            return;
        };
        listener.counters.request();
        let Some(dest) = listener.default.destination(None) else {
            listener.counters.elb_5xx();
            return;
        };
        dest.counters.request();
        match dest.group.pick_flow(peer, local) {
            Ok(t) => (
                t,
                Arc::clone(&listener.counters),
                Arc::clone(&dest.counters),
            ),
            Err(_) => {
                // No target: the client sees its connection closed.
                listener.counters.elb_5xx();
                dest.counters.elb_5xx();
                return;
            }
        }
    };
    let mut upstream =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(target = %target.addr, error = %e, "target connection failed");
                lb_counters.elb_5xx();
                group_counters.elb_5xx();
                return;
            }
            Err(_) => {
                lb_counters.elb_5xx();
                group_counters.elb_5xx();
                return;
            }
        };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r {
                tracing::debug!(%peer, target = %target.addr, error = %e, "flow ended with an error");
            }
        }
        _ = target.closed() => {
            tracing::debug!(%peer, target = %target.addr, "deregistration delay over: closing the flow");
        }
    }
}
