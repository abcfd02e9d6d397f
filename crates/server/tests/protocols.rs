//! The front's protocols driven by the real AWS CLI (botocore): AWS Query
//! with XML answers (STS), errors in each protocol's shape that the client
//! parses, signature failures in XML, and unknown services and operations.

mod common;

use common::{TestServer, ALICE, REGION};
use serde_json::Value;

/// What one AWS CLI run produced.
struct Run {
    ok: bool,
    stdout: Value,
    stderr: String,
}

/// `aws SERVICE ARGS… --output json` against `server` as `key`/`secret`.
async fn aws(server: &TestServer, key: &str, secret: &str, service: &str, args: &[&str]) -> Run {
    let exe = std::env::var("FLOTILLA_TEST_AWS_CLI").unwrap_or_else(|_| "aws".into());
    let out = tokio::process::Command::new(&exe)
        .arg(service)
        .args(args)
        .args([
            "--output",
            "json",
            "--endpoint-url",
            &server.endpoint,
            "--region",
            REGION,
        ])
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("the AWS CLI ({exe}) must be installed: run the tests with scripts/test ({e})")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Run {
        ok: out.status.success(),
        stdout: serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `aws sts get-caller-identity` answers the signer's account, ARN and
/// user id, over the Query protocol with an XML answer.
#[tokio::test]
async fn sts_get_caller_identity_answers_the_signer() {
    let server = TestServer::start().await;
    let run = aws(
        &server,
        ALICE.access_key_id,
        ALICE.secret,
        "sts",
        &["get-caller-identity"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout["Account"], ALICE.account);
    assert_eq!(
        run.stdout["Arn"],
        format!("arn:aws:iam::{}:user/alice", ALICE.account)
    );
    assert_eq!(run.stdout["UserId"], ALICE.access_key_id);
}

/// A bad signature on a Query service is answered in XML, which the CLI
/// parses into the error code.
#[tokio::test]
async fn signature_errors_reach_query_clients_in_xml() {
    let server = TestServer::start().await;
    let run = aws(
        &server,
        ALICE.access_key_id,
        "not-the-secret",
        "sts",
        &["get-caller-identity"],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("(SignatureDoesNotMatch)")
            || run.stderr.contains("(InvalidSignatureException)"),
        "the CLI could not read the error: {}",
        run.stderr
    );
    let run = aws(
        &server,
        "AKIANOSUCHKEY0000000",
        "whatever",
        "sts",
        &["get-caller-identity"],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("(UnrecognizedClientException)")
            || run.stderr.contains("(InvalidClientTokenId)"),
        "{}",
        run.stderr
    );
}

/// A service Flotilla does not serve, on each protocol the CLI speaks, gets
/// an error the CLI can read (never an unparseable body).
#[tokio::test]
async fn unknown_services_and_operations_are_parseable_errors() {
    let server = TestServer::start().await;
    // Query (IAM is not served).
    let run = aws(
        &server,
        ALICE.access_key_id,
        ALICE.secret,
        "iam",
        &["list-users"],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("(UnknownOperationException)"),
        "{}",
        run.stderr
    );
    // AWS JSON 1.1 (Secrets Manager is not served).
    let run = aws(
        &server,
        ALICE.access_key_id,
        ALICE.secret,
        "secretsmanager",
        &["list-secrets"],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("(UnknownOperationException)"),
        "{}",
        run.stderr
    );
}
