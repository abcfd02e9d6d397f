//! The agent's main loop over an in-process control plane and the fake
//! runtime; and two agents sharing one engine.

use std::sync::Arc;
use std::time::Duration;

use flotilla_agent::control::{run, AgentOutput, ChannelControlPlane, ControlEvent};
use flotilla_agent::engine::{Engine, EngineConfig};
use flotilla_agent::fake::FakeRuntime;
use flotilla_agent::MetadataIndex;
use flotilla_model::agent::DesiredTask;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

fn desired(id: &str) -> DesiredTask {
    DesiredTask {
        task: serde_json::from_value(json!({"taskArn": format!("arn:aws:ecs:us-east-1:1:task/c/{id}"), "desiredStatus": "RUNNING"})).unwrap(),
        definition: serde_json::from_value(json!({"family": "f", "revision": 1,
            "containerDefinitions": [{"name": "a", "image": "img"}]})).unwrap(),
    }
}

async fn next(out: &mut UnboundedReceiver<AgentOutput>) -> AgentOutput {
    tokio::time::timeout(Duration::from_secs(5), out.recv())
        .await
        .expect("timed out")
        .expect("agent ended")
}

#[tokio::test]
async fn run_applies_desired_sets_and_reports_changes() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let (cp, events, mut out) = ChannelControlPlane::new();
    let config = EngineConfig::new("c", "arn:aws:ecs:us-east-1:1:container-instance/c/i1");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run(config, Arc::new(fake.clone()), None, cp, async move {
        let _ = stopped.await;
    }));

    events
        .send(ControlEvent::Desired {
            version: 3,
            tasks: vec![desired("t1")],
        })
        .await
        .unwrap();
    let mut applied = false;
    let mut running = false;
    while !(applied && running) {
        match next(&mut out).await {
            AgentOutput::Applied(v) => {
                assert_eq!(v, 3);
                applied = true;
            }
            AgentOutput::Changes(changes) => {
                running |= changes.iter().any(|c| c.status() == "RUNNING")
            }
            AgentOutput::Stats(s) => panic!("stats sent with sampling off: {s:?}"),
        }
    }

    // After a reconnect the latest state of every task is sent again.
    events.send(ControlEvent::Connected).await.unwrap();
    match next(&mut out).await {
        AgentOutput::Changes(changes) => {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].status(), "RUNNING");
        }
        other => panic!("expected a resync, got {other:?}"),
    }

    let _ = stop.send(());
    agent.await.unwrap().unwrap();
    assert!(
        fake.by_name("a").is_some(),
        "shutting the agent down leaves containers running"
    );
}

#[tokio::test]
async fn agents_sharing_an_engine_touch_only_their_own_containers() {
    let fake = FakeRuntime::new();
    fake.add_image("img");
    let start = |instance: &str| {
        let mut config = EngineConfig::new("c", instance);
        config.cleanup_delay = Duration::from_millis(10);
        Engine::start(Arc::new(fake.clone()), config, MetadataIndex::new())
    };
    let (one, mut one_changes) = start("arn:aws:ecs:us-east-1:1:container-instance/c/one");
    one.set_desired(1, vec![desired("mine")]).await.unwrap();
    while let Some(c) = one_changes.recv().await {
        if c.status() == "RUNNING" {
            break;
        }
    }
    // A second agent starts with an empty desired set: it must not remove
    // the first agent's container as an orphan.
    let (two, _two_changes) = start("arn:aws:ecs:us-east-1:1:container-instance/c/two");
    two.set_desired(1, vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = fake.by_name("a").expect("still there");
    assert_eq!(c.state, flotilla_agent::runtime::RunState::Running);
    // Nor does it see its events.
    fake.exit(&c.id, 1);
    let stopped = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(c) = one_changes.recv().await {
            if c.status() == "STOPPED" {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(stopped);
}
