//! The ECS API driven by the real AWS CLI (botocore: its own JSON
//! serializer, SigV4 signer, paginators, shorthand syntax and error
//! printing), end to end against a server on a real SQLite store.
//!
//! Needs `$FLOTILLA_TEST_AWS_CLI` (scripts/test installs the CLI into a
//! virtual environment under target/ and sets it).

mod common;
mod support;

use common::{taskdefs_dir, TestServer, ALICE, BOB};
use serde_json::{json, Value};
use support::CliRun;

async fn aws(server: &TestServer, args: &[&str]) -> CliRun {
    support::aws(&server.endpoint, ALICE.access_key_id, ALICE.secret, args).await
}

/// Runs a command that must succeed and returns its JSON output.
async fn aws_ok(server: &TestServer, args: &[&str]) -> Value {
    let run = aws(server, args).await;
    assert_eq!(
        run.code,
        0,
        "aws ecs {}: exit {}\n{}",
        args.join(" "),
        run.code,
        run.stderr
    );
    run.stdout
}

/// Runs a command that must fail with the AWS error `code`; the CLI prints
/// `An error occurred (CODE) when calling the OP operation: MESSAGE` and
/// exits non-zero (254 for a service error in CLI v1/v2 today; 255 in older
/// releases).
async fn aws_err(server: &TestServer, args: &[&str], code: &str) -> String {
    let run = aws(server, args).await;
    assert_ne!(
        run.code,
        0,
        "aws ecs {} succeeded: {}",
        args.join(" "),
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!("An error occurred ({code})")),
        "aws ecs {}: expected {code} in stderr (exit {}):\n{}",
        args.join(" "),
        run.code,
        run.stderr
    );
    assert!(
        matches!(run.code, 254 | 255),
        "exit code {} for a service error",
        run.code
    );
    run.stderr
}

#[tokio::test]
async fn clusters_with_the_cli() {
    let server = TestServer::start().await;
    let out = aws_ok(
        &server,
        &[
            "create-cluster",
            "--cluster-name",
            "web",
            "--tags",
            "key=team,value=edge",
        ],
    )
    .await;
    assert_eq!(
        out["cluster"]["clusterArn"],
        format!("arn:aws:ecs:us-east-1:{}:cluster/web", ALICE.account)
    );
    assert_eq!(out["cluster"]["status"], "ACTIVE");

    let out = aws_ok(
        &server,
        &[
            "describe-clusters",
            "--clusters",
            "web",
            "nope",
            "--include",
            "TAGS",
            "SETTINGS",
        ],
    )
    .await;
    assert_eq!(out["clusters"][0]["clusterName"], "web");
    assert_eq!(
        out["clusters"][0]["tags"],
        json!([{"key": "team", "value": "edge"}])
    );
    assert_eq!(out["failures"][0]["reason"], "MISSING");

    let arn = format!("arn:aws:ecs:us-east-1:{}:cluster/web", ALICE.account);
    aws_ok(
        &server,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "key=stage,value=prod",
        ],
    )
    .await;
    let out = aws_ok(&server, &["list-tags-for-resource", "--resource-arn", &arn]).await;
    let mut tags = out["tags"].as_array().unwrap().clone();
    tags.sort_by_key(|t| t["key"].as_str().unwrap().to_string());
    assert_eq!(
        tags,
        vec![
            json!({"key": "stage", "value": "prod"}),
            json!({"key": "team", "value": "edge"})
        ]
    );
    aws_ok(
        &server,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
        ],
    )
    .await;
    let out = aws_ok(&server, &["list-tags-for-resource", "--resource-arn", &arn]).await;
    assert_eq!(out["tags"], json!([{"key": "stage", "value": "prod"}]));

    let out = aws_ok(&server, &["delete-cluster", "--cluster", "web"]).await;
    assert_eq!(out["cluster"]["status"], "INACTIVE");
    let out = aws_ok(&server, &["list-clusters"]).await;
    assert_eq!(out["clusterArns"], json!([]));

    // Errors: the CLI prints the code from the answer and exits non-zero.
    aws_err(
        &server,
        &["delete-cluster", "--cluster", "web"],
        "ClusterNotFoundException",
    )
    .await;
    aws_err(
        &server,
        &["list-tasks", "--cluster", "nope"],
        "ClusterNotFoundException",
    )
    .await;
    let stderr = aws_err(
        &server,
        &["create-cluster", "--cluster-name", "has space"],
        "InvalidParameterException",
    )
    .await;
    assert!(stderr.contains("letters"), "{stderr}");
    let stderr = aws_err(
        &server,
        &["list-clusters", "--max-items", "5", "--page-size", "101"],
        "InvalidParameterException",
    )
    .await;
    assert!(stderr.contains("maxResults"), "{stderr}");
}

/// The CLI paginates on its own: it follows nextToken until the last page
/// and prints every item once.
#[tokio::test]
async fn the_cli_walks_every_page() {
    let server = TestServer::start().await;
    let raw = server.raw(&ALICE);
    let mut expected = Vec::new();
    for i in 0..230 {
        let out = support::ok(
            &raw,
            "CreateCluster",
            &json!({"clusterName": format!("c{i:03}")}),
        )
        .await;
        expected.push(out["cluster"]["clusterArn"].as_str().unwrap().to_string());
    }
    expected.sort();
    let arns = |v: &Value| {
        let mut a: Vec<String> = v["clusterArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        a.sort();
        a
    };
    // Server-sized pages (100, 100, 30).
    let out = aws_ok(&server, &["list-clusters"]).await;
    assert_eq!(arns(&out), expected);
    assert!(out.get("nextToken").is_none(), "{}", out["nextToken"]);
    // Small pages: 8 requests of 30.
    let out = aws_ok(&server, &["list-clusters", "--page-size", "30"]).await;
    assert_eq!(arns(&out), expected);
    // --max-items stops early and hands back a token to resume from.
    let first = aws_ok(
        &server,
        &["list-clusters", "--max-items", "150", "--page-size", "40"],
    )
    .await;
    assert_eq!(first["clusterArns"].as_array().unwrap().len(), 150);
    let token = first["NextToken"]
        .as_str()
        .expect("a resume token")
        .to_string();
    let rest = aws_ok(
        &server,
        &[
            "list-clusters",
            "--starting-token",
            &token,
            "--page-size",
            "40",
        ],
    )
    .await;
    let mut all = arns(&first);
    all.extend(arns(&rest));
    all.sort();
    assert_eq!(all, expected);
}

/// Corpus files the CLI accepts client-side (it validates against its own
/// model, so describe outputs with read-only keys are out).
const CLI_FILES: &[&str] = &["018", "021", "023", "042", "045", "049"];

fn corpus_file(prefix: &str) -> std::path::PathBuf {
    std::fs::read_dir(taskdefs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no corpus file {prefix}-*"))
}

#[tokio::test]
async fn task_definitions_with_the_cli() {
    let server = TestServer::start().await;
    let mut families = Vec::new();
    for prefix in CLI_FILES {
        let path = corpus_file(prefix);
        let given: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let uri = format!("file://{}", path.display());
        let out = aws_ok(
            &server,
            &["register-task-definition", "--cli-input-json", &uri],
        )
        .await;
        let family = given["family"].as_str().unwrap().to_string();
        assert_eq!(out["taskDefinition"]["family"], family.as_str(), "{prefix}");
        assert_eq!(out["taskDefinition"]["revision"], 1, "{prefix}");

        let described = aws_ok(
            &server,
            &[
                "describe-task-definition",
                "--task-definition",
                &family,
                "--include",
                "TAGS",
            ],
        )
        .await;
        let mut expected = given.as_object().unwrap().clone();
        let tags = expected.remove("tags");
        if let Some(d) =
            support::subset_diff(&Value::Object(expected), &described["taskDefinition"], "")
        {
            panic!("{prefix}: describe-task-definition differs from the file: {d}");
        }
        if let Some(tags) = tags {
            assert_eq!(
                support::subset_diff(&tags, &described["tags"], "tags"),
                None,
                "{prefix}"
            );
        }
        families.push(family);
    }
    // A second revision of the first family, then the lists.
    let first = corpus_file(CLI_FILES[0]);
    let uri = format!("file://{}", first.display());
    let out = aws_ok(
        &server,
        &["register-task-definition", "--cli-input-json", &uri],
    )
    .await;
    assert_eq!(out["taskDefinition"]["revision"], 2);
    let out = aws_ok(&server, &["list-task-definitions"]).await;
    assert_eq!(
        out["taskDefinitionArns"].as_array().unwrap().len(),
        CLI_FILES.len() + 1
    );
    let out = aws_ok(
        &server,
        &[
            "list-task-definitions",
            "--family-prefix",
            &families[0],
            "--sort",
            "DESC",
        ],
    )
    .await;
    let arns = out["taskDefinitionArns"].as_array().unwrap();
    assert_eq!(arns.len(), 2);
    assert!(
        arns[0]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}:2", families[0])),
        "{out}"
    );
    let out = aws_ok(&server, &["list-task-definition-families"]).await;
    let mut sorted = families.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(out["families"], json!(sorted));

    let rev1 = format!("{}:1", families[0]);
    let out = aws_ok(
        &server,
        &["deregister-task-definition", "--task-definition", &rev1],
    )
    .await;
    assert_eq!(out["taskDefinition"]["status"], "INACTIVE");
    let out = aws_ok(
        &server,
        &["list-task-definitions", "--family-prefix", &families[0]],
    )
    .await;
    assert_eq!(out["taskDefinitionArns"].as_array().unwrap().len(), 1);
    let out = aws_ok(&server, &["list-task-definitions", "--status", "INACTIVE"]).await;
    assert_eq!(out["taskDefinitionArns"].as_array().unwrap().len(), 1);
    let out = aws_ok(
        &server,
        &["describe-task-definition", "--task-definition", &rev1],
    )
    .await;
    assert_eq!(out["taskDefinition"]["status"], "INACTIVE");

    aws_err(
        &server,
        &["describe-task-definition", "--task-definition", "nope"],
        "ClientException",
    )
    .await;
    aws_err(
        &server,
        &["deregister-task-definition", "--task-definition", "nope:1"],
        "ClientException",
    )
    .await;
    // A definition the server rejects: no container memory on EC2.
    let stderr = aws_err(
        &server,
        &[
            "register-task-definition",
            "--family",
            "bad",
            "--container-definitions",
            r#"[{"name":"a","image":"i"}]"#,
        ],
        "ClientException",
    )
    .await;
    assert!(stderr.contains("memory"), "{stderr}");
    let out = aws_ok(
        &server,
        &["list-task-definition-families", "--family-prefix", "bad"],
    )
    .await;
    assert_eq!(out["families"], json!([]));
}

#[tokio::test]
async fn container_instances_and_attributes_with_the_cli() {
    let server = TestServer::start().await;
    aws_ok(&server, &["create-cluster", "--cluster-name", "hosts"]).await;
    let doc = r#"{"instanceId":"i-0aaaabbbbccccdddd","availabilityZone":"us-east-1a","instanceType":"c5.xlarge","region":"us-east-1"}"#;
    let out = aws_ok(
        &server,
        &[
            "register-container-instance",
            "--cluster",
            "hosts",
            "--instance-identity-document",
            doc,
            "--total-resources",
            "name=CPU,type=INTEGER,integerValue=4096",
            "name=MEMORY,type=INTEGER,integerValue=8192",
            "--attributes",
            "name=ecs.os-type,value=linux",
        ],
    )
    .await;
    let arn = out["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        out["containerInstance"]["ec2InstanceId"],
        "i-0aaaabbbbccccdddd"
    );

    let out = aws_ok(&server, &["list-container-instances", "--cluster", "hosts"]).await;
    assert_eq!(out["containerInstanceArns"], json!([arn]));
    let out = aws_ok(
        &server,
        &[
            "describe-container-instances",
            "--cluster",
            "hosts",
            "--container-instances",
            &arn,
        ],
    )
    .await;
    let cpu = out["containerInstances"][0]["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "CPU")
        .unwrap()
        .clone();
    assert_eq!(cpu["integerValue"], 4096);

    aws_ok(
        &server,
        &[
            "put-attributes",
            "--cluster",
            "hosts",
            "--attributes",
            &format!("name=stack,value=prod,targetId={arn}"),
        ],
    )
    .await;
    let out = aws_ok(
        &server,
        &[
            "list-attributes",
            "--cluster",
            "hosts",
            "--target-type",
            "container-instance",
            "--attribute-name",
            "stack",
        ],
    )
    .await;
    assert_eq!(out["attributes"][0]["value"], "prod");
    assert_eq!(out["attributes"][0]["targetId"], arn.as_str());
    let out = aws_ok(
        &server,
        &[
            "list-container-instances",
            "--cluster",
            "hosts",
            "--filter",
            "attribute:stack == prod",
        ],
    )
    .await;
    assert_eq!(out["containerInstanceArns"], json!([arn]));
    aws_err(
        &server,
        &[
            "put-attributes",
            "--cluster",
            "hosts",
            "--attributes",
            "name=x,value=y,targetId=nope",
        ],
        "TargetNotFoundException",
    )
    .await;

    aws_err(
        &server,
        &["delete-cluster", "--cluster", "hosts"],
        "ClusterContainsContainerInstancesException",
    )
    .await;
    let out = aws_ok(
        &server,
        &[
            "deregister-container-instance",
            "--cluster",
            "hosts",
            "--container-instance",
            &arn,
            "--force",
        ],
    )
    .await;
    assert_eq!(out["containerInstance"]["status"], "INACTIVE");
    let out = aws_ok(&server, &["delete-cluster", "--cluster", "hosts"]).await;
    assert_eq!(out["cluster"]["status"], "INACTIVE");
}

#[tokio::test]
async fn account_settings_with_the_cli() {
    let server = TestServer::start().await;
    let out = aws_ok(
        &server,
        &[
            "put-account-setting-default",
            "--name",
            "containerInsights",
            "--value",
            "enabled",
        ],
    )
    .await;
    assert_eq!(out["setting"]["value"], "enabled");
    let out = aws_ok(
        &server,
        &[
            "list-account-settings",
            "--effective-settings",
            "--name",
            "containerInsights",
        ],
    )
    .await;
    assert_eq!(out["settings"][0]["value"], "enabled");
    aws_ok(
        &server,
        &[
            "put-account-setting",
            "--name",
            "containerInsights",
            "--value",
            "disabled",
        ],
    )
    .await;
    let out = aws_ok(
        &server,
        &[
            "list-account-settings",
            "--effective-settings",
            "--name",
            "containerInsights",
        ],
    )
    .await;
    assert_eq!(out["settings"][0]["value"], "disabled");
    aws_err(
        &server,
        &[
            "put-account-setting",
            "--name",
            "containerInsights",
            "--value",
            "maybe",
        ],
        "InvalidParameterException",
    )
    .await;
    // Bob's account does not see Alice's default.
    let bob = support::aws(
        &server.endpoint,
        BOB.access_key_id,
        BOB.secret,
        &[
            "list-account-settings",
            "--effective-settings",
            "--name",
            "containerInsights",
        ],
    )
    .await;
    assert_eq!(bob.code, 0, "{}", bob.stderr);
    assert_eq!(bob.stdout["settings"][0]["value"], "disabled");
}

/// Authentication failures as the CLI reports them.
#[tokio::test]
async fn credentials_errors_with_the_cli() {
    let server = TestServer::start().await;
    let run = support::aws(
        &server.endpoint,
        ALICE.access_key_id,
        "wrong-secret",
        &["list-clusters"],
    )
    .await;
    assert!(
        run.stderr
            .contains("An error occurred (InvalidSignatureException)"),
        "{}",
        run.stderr
    );
    assert_ne!(run.code, 0);
    let run = support::aws(
        &server.endpoint,
        "AKIANOBODY0000000000",
        "x",
        &["list-clusters"],
    )
    .await;
    assert!(
        run.stderr
            .contains("An error occurred (UnrecognizedClientException)"),
        "{}",
        run.stderr
    );
    assert_ne!(run.code, 0);
    // Accounts are isolated through the CLI too.
    aws_ok(&server, &["create-cluster", "--cluster-name", "mine"]).await;
    let run = support::aws(
        &server.endpoint,
        BOB.access_key_id,
        BOB.secret,
        &["list-clusters"],
    )
    .await;
    assert_eq!(run.stdout["clusterArns"], json!([]));
}
