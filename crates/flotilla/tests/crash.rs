//! Nothing acknowledged is lost: the real `flotilla server` process under a
//! burst of concurrent writes is killed with SIGKILL, restarted on the same
//! data directory, and every write it had acknowledged must be there, intact,
//! under the same ARN. Three rounds, each killed at a different point, on the
//! same data directory (so later rounds also prove that revisions continue
//! after a crash).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_client::{Client, ClientError};
use serde_json::{json, Value};

const WRITERS: usize = 16;

/// A running `flotilla server` and the credentials it printed.
struct Server {
    child: Child,
    client: Client,
}

impl Server {
    /// Starts the binary on a free loopback port and waits until it serves.
    fn start(data_dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn flotilla server");
        // `export NAME=VALUE` lines, printed before the server serves.
        let mut env = BTreeMap::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while env.len() < 4 {
            let line = lines
                .next()
                .expect("flotilla server exited before printing its credentials")
                .unwrap();
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                env.insert(k.to_string(), v.to_string());
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let client = Client::ecs(
            &env["AWS_ENDPOINT_URL"],
            &env["AWS_ACCESS_KEY_ID"],
            &env["AWS_SECRET_ACCESS_KEY"],
            &env["AWS_DEFAULT_REGION"],
        );
        Server { child, client }
    }

    /// SIGKILL, then reap.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(c: &Client, op: &str, body: Value) -> Result<Value, ClientError> {
    c.call::<Value, Value>(op, &body).await
}

/// Everything the server acknowledged, by writer.
#[derive(Default)]
struct Acked {
    /// cluster ARN → the cluster as CreateCluster answered it.
    clusters: BTreeMap<String, Value>,
    /// (family, revision) → the task definition as RegisterTaskDefinition answered it.
    definitions: BTreeMap<(String, i64), Value>,
    /// cluster ARN → tags acknowledged by TagResource (key → value).
    tags: BTreeMap<String, BTreeMap<String, String>>,
}

/// One writer: creates clusters, registers revisions of its own family and
/// tags its clusters, in a loop, recording each acknowledged write, until the
/// server stops answering.
async fn writer(c: Client, round: usize, w: usize, acked: Arc<Mutex<Acked>>) -> usize {
    let mut n = 0;
    let family = format!("w{w:02}");
    loop {
        let i = n;
        n += 1;
        let result = match i % 3 {
            0 => {
                let name = format!("r{round}-w{w:02}-c{i:05}");
                call(
                    &c,
                    "CreateCluster",
                    json!({"clusterName": name, "tags": [{"key": "writer", "value": family}]}),
                )
                .await
                .map(|v| {
                    let arn = v["cluster"]["clusterArn"].as_str().unwrap().to_string();
                    let mut a = acked.lock().unwrap();
                    a.tags.insert(
                        arn.clone(),
                        BTreeMap::from([("writer".to_string(), family.clone())]),
                    );
                    a.clusters.insert(arn, v["cluster"].clone());
                })
            }
            1 => {
                let body = json!({
                    "family": family,
                    "containerDefinitions": [{
                        "name": "app",
                        "image": format!("registry.local/app:{round}.{i}"),
                        "memory": 64 + (i % 512),
                        "environment": [{"name": "ROUND", "value": round.to_string()}, {"name": "SEQ", "value": i.to_string()}]
                    }]
                });
                call(&c, "RegisterTaskDefinition", body).await.map(|v| {
                    let td = v["taskDefinition"].clone();
                    let rev = td["revision"].as_i64().unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .definitions
                        .insert((family.clone(), rev), td);
                })
            }
            _ => {
                // Tag the most recent cluster this writer created in this round.
                let target = {
                    let a = acked.lock().unwrap();
                    let prefix = format!("cluster/r{round}-w{w:02}-");
                    a.clusters
                        .keys()
                        .rev()
                        .find(|k| k.contains(&prefix))
                        .cloned()
                };
                let Some(arn) = target else { continue };
                let (k, v) = (format!("t{i}"), format!("v{i}"));
                call(
                    &c,
                    "TagResource",
                    json!({"resourceArn": arn, "tags": [{"key": k, "value": v}]}),
                )
                .await
                .map(|_| {
                    acked
                        .lock()
                        .unwrap()
                        .tags
                        .get_mut(&arn)
                        .unwrap()
                        .insert(k, v);
                })
            }
        };
        match result {
            Ok(()) => {}
            // The server is gone (or going): this write was not acknowledged.
            Err(ClientError::Transport(_) | ClientError::Decode(_)) => return n,
            Err(e) => panic!("writer {w}: unexpected error from a live server: {e}"),
        }
    }
}

/// Checks that every acknowledged object is present and intact.
async fn verify(c: &Client, acked: &Acked) {
    // Clusters: same ARN, ACTIVE, same content, every acknowledged tag.
    let arns: Vec<&String> = acked.clusters.keys().collect();
    for chunk in arns.chunks(100) {
        let d = call(
            c,
            "DescribeClusters",
            json!({"clusters": chunk, "include": ["TAGS"]}),
        )
        .await
        .unwrap();
        assert_eq!(
            d["failures"],
            json!([]),
            "acknowledged clusters are missing after the crash"
        );
        for got in d["clusters"].as_array().unwrap() {
            let arn = got["clusterArn"].as_str().unwrap();
            let want = &acked.clusters[arn];
            assert_eq!(got["status"], "ACTIVE", "{arn}");
            assert_eq!(got["clusterName"], want["clusterName"], "{arn}");
            let tags: BTreeMap<String, String> = got["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap().to_string(),
                        t["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            for (k, v) in &acked.tags[arn] {
                assert_eq!(
                    tags.get(k),
                    Some(v),
                    "{arn}: acknowledged tag {k} lost; has {tags:?}"
                );
            }
        }
    }
    // Task definitions: every acknowledged revision, byte for byte as
    // acknowledged; revisions of each family contiguous from 1.
    let mut max_by_family: BTreeMap<&str, i64> = BTreeMap::new();
    for ((family, rev), want) in &acked.definitions {
        let got = call(
            c,
            "DescribeTaskDefinition",
            json!({"taskDefinition": format!("{family}:{rev}")}),
        )
        .await
        .unwrap();
        assert_eq!(
            &got["taskDefinition"], want,
            "{family}:{rev} changed across the crash"
        );
        let m = max_by_family.entry(family).or_default();
        *m = (*m).max(*rev);
    }
    for (family, max) in max_by_family {
        let mut revisions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"familyPrefix": family, "sort": "ASC"});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = call(c, "ListTaskDefinitions", body).await.unwrap();
            for arn in page["taskDefinitionArns"].as_array().unwrap() {
                let (f, r) = arn
                    .as_str()
                    .unwrap()
                    .rsplit_once('/')
                    .unwrap()
                    .1
                    .split_once(':')
                    .unwrap();
                if f == family {
                    revisions.push(r.parse::<i64>().unwrap());
                }
            }
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        // Unacknowledged writes in flight at the kill may or may not have
        // landed, but numbering has no holes and never goes backwards.
        assert!(
            revisions.len() as i64 >= max,
            "{family}: {} revisions listed, acknowledged up to {max}",
            revisions.len()
        );
        assert_eq!(
            revisions,
            (1..=revisions.len() as i64).collect::<Vec<_>>(),
            "{family}: revisions not contiguous"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));
    // Kill points: early in the burst, mid-burst, and later.
    for (round, kill_after) in [(1usize, 150u64), (2, 600), (3, 1200)].into_iter() {
        let server = Server::start(dir.path());
        // The state left by the previous round's crash is all there.
        let before = acked.lock().unwrap().snapshot();
        verify(&server.client, &before).await;
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(server.client.clone(), round, w, acked.clone())))
            .collect();
        // The kill comes `kill_after` after this round's first acknowledged
        // write of each kind (on a busy machine the first ones may take a
        // while), so every round kills a burst already under way.
        let counts = || {
            let a = acked.lock().unwrap();
            (a.clusters.len(), a.definitions.len())
        };
        let at_start = counts();
        let waiting = Instant::now();
        while waiting.elapsed() < Duration::from_secs(30) {
            let now = counts();
            if now.0 > at_start.0 && now.1 > at_start.1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        server.kill();
        let mut attempted = 0;
        for w in writers {
            attempted += w.await.unwrap();
        }
        let a = acked.lock().unwrap().snapshot();
        eprintln!(
            "round {round}: killed after {kill_after} ms; {attempted} writes attempted; totals acknowledged: {} clusters, {} revisions",
            a.clusters.len(),
            a.definitions.len()
        );
        assert!(
            !a.definitions.is_empty() && !a.clusters.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );
    }
    let server = Server::start(dir.path());
    let a = acked.lock().unwrap().snapshot();
    verify(&server.client, &a).await;
    // And the server still takes writes, continuing each family's numbering.
    let max = a
        .definitions
        .keys()
        .filter(|(f, _)| f == "w00")
        .map(|(_, r)| *r)
        .max()
        .unwrap();
    let next = call(
        &server.client,
        "RegisterTaskDefinition",
        json!({"family": "w00", "containerDefinitions": [{"name": "app", "image": "x", "memory": 64}]}),
    )
    .await
    .unwrap();
    assert!(next["taskDefinition"]["revision"].as_i64().unwrap() > max);
    drop(server);
    eprintln!("crash test took {:?}", started.elapsed());
}

impl Acked {
    fn snapshot(&self) -> Acked {
        Acked {
            clusters: self.clusters.clone(),
            definitions: self.definitions.clone(),
            tags: self.tags.clone(),
        }
    }
}
