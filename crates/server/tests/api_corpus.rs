//! Every real-world task definition in `shared/reference/taskdefs` sent as a
//! RegisterTaskDefinition body, exactly as the file is, signed, over HTTP:
//! the valid ones register and DescribeTaskDefinition gives back every member
//! the file gave; the ones ECS rejects are rejected with a clear `__type` and
//! a message naming the field, and register nothing.

mod common;
mod support;

use common::{taskdefs_dir, TestServer, ALICE};
use serde_json::{json, Value};
use support::{assert_error, ok, send, snapshot, subset_diff};

/// Members of describe output a request does not carry (some corpus files
/// are describe outputs).
const READ_ONLY: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// The files real ECS rejects: (file prefix, `__type`, text the message must
/// contain, naming the field). The reasons are in crates/model/tests/taskdef_corpus.rs.
const REJECTED: &[(&str, &str, &str)] = &[
    // Container cpu/memory as JSON strings (memory comes first in the file).
    (
        "019",
        "SerializationException",
        "containerDefinitions[0].memory",
    ),
    // App Mesh proxy container 'envoy' is not in the definition.
    ("031", "ClientException", "envoy"),
    // `tags` as a map instead of a list.
    ("035", "SerializationException", "tags"),
    // links to a container that does not exist.
    ("046", "ClientException", "app-container"),
    // `ipcMode: ""` is not an IpcMode.
    ("053", "SerializationException", "ipcMode"),
    // Family "%CLUSTER_NAME%-%CONTAINER_NAME%".
    ("054", "ClientException", "Family"),
    // environment entries with valueFrom and no value.
    ("058", "ClientException", "secrets"),
];

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(taskdefs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_corpus_file_registers_and_reads_back_or_is_rejected_clearly() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    let files = corpus();
    assert_eq!(files.len(), 60);
    let mut problems = Vec::new();
    let mut accepted = 0;
    for (name, bytes) in &files {
        let given: Value = serde_json::from_slice(bytes).unwrap();
        let before = snapshot(&c).await;
        let r = send(&c, "RegisterTaskDefinition", bytes.clone()).await;
        assert_ne!(
            r.status,
            500,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if let Some((_, code, words)) = REJECTED.iter().find(|(p, _, _)| name.starts_with(p)) {
            if r.status == 200 {
                problems.push(format!("{name}: registered, but ECS rejects it ({code})"));
                continue;
            }
            let message = assert_error(&r, 400, code);
            if !message.contains(words) {
                problems.push(format!(
                    "{name}: {code} message should name {words:?}: {message}"
                ));
            }
            if snapshot(&c).await != before {
                problems.push(format!("{name}: rejected, but the state changed"));
            }
            continue;
        }
        if r.status != 200 {
            problems.push(format!(
                "{name}: rejected: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
            continue;
        }
        accepted += 1;
        let registered = r.json();
        let arn = registered["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .unwrap()
            .to_string();
        let family = given["family"].as_str().unwrap();
        assert!(
            arn.ends_with(&format!(
                ":task-definition/{family}:{}",
                registered["taskDefinition"]["revision"]
            )),
            "{name}: {arn}"
        );

        let described = ok(
            &c,
            "DescribeTaskDefinition",
            &json!({"taskDefinition": arn, "include": ["TAGS"]}),
        )
        .await;
        let mut expected = given.as_object().unwrap().clone();
        for k in READ_ONLY {
            expected.remove(*k);
        }
        // Tags are beside the definition, not in it.
        if let Some(tags) = expected.remove("tags") {
            if let Some(d) = subset_diff(&tags, &described["tags"], "tags") {
                problems.push(format!("{name}: {d}"));
            }
        }
        let td = &described["taskDefinition"];
        if let Some(d) = subset_diff(&Value::Object(expected.clone()), td, "") {
            problems.push(format!("{name}: describe differs: {d}"));
        }
        // What RegisterTaskDefinition answered is what DescribeTaskDefinition shows.
        if registered["taskDefinition"] != *td {
            problems.push(format!(
                "{name}: the register answer and the describe answer differ"
            ));
        }
        assert_eq!(td["status"], "ACTIVE", "{name}");
        assert_eq!(
            td["registeredBy"],
            format!("arn:aws:iam::{}:user/alice", ALICE.account),
            "{name}"
        );
    }
    assert_eq!(accepted, 60 - REJECTED.len(), "{}", problems.join("\n"));
    assert!(
        problems.is_empty(),
        "{} corpus files misbehave over the wire:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // Every accepted file is listed once, and survives a restart unchanged.
    let listed =
        support::list_all(&c, "ListTaskDefinitions", json!({}), "taskDefinitionArns").await;
    assert_eq!(listed.len(), accepted);
    let before = snapshot(&c).await;
    let dir = server.data_dir.clone();
    let tmp = server.stop().await;
    let server = TestServer::start_in(dir).await;
    assert_eq!(
        snapshot(&server.raw(&ALICE)).await,
        before,
        "the corpus did not survive a restart unchanged"
    );
    drop(tmp);
}

/// Registering the same file twice makes revision 2 with the same content.
#[tokio::test]
async fn a_second_registration_is_the_next_revision_with_the_same_content() {
    let server = TestServer::start().await;
    let c = server.raw(&ALICE);
    let (_, bytes) = corpus()
        .into_iter()
        .find(|(n, _)| n.starts_with("042"))
        .unwrap();
    let one = send(&c, "RegisterTaskDefinition", bytes.clone())
        .await
        .json();
    let two = send(&c, "RegisterTaskDefinition", bytes).await.json();
    assert_eq!(one["taskDefinition"]["revision"], 1);
    assert_eq!(two["taskDefinition"]["revision"], 2);
    let strip = |v: &Value| {
        let mut v = v["taskDefinition"].clone();
        for k in ["taskDefinitionArn", "revision", "registeredAt"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(strip(&one), strip(&two));
}
