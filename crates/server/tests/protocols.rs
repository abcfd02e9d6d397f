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

/// RPC v2 CBOR: a service Flotilla does not serve (Cloud Map lists CBOR
/// first) and an operation a served service lacks are answered in CBOR, with
/// the protocol's header, and never as JSON.
#[tokio::test]
async fn unknown_cbor_services_and_operations_are_cbor_errors() {
    let server = TestServer::start().await;
    let base = server.raw(&ALICE);
    for (signing, path) in [
        (
            "servicediscovery",
            "/service/Route53AutoNaming_v20170314/operation/ListNamespaces",
        ),
        (
            "monitoring",
            "/service/GraniteServiceVersion20100801/operation/NoSuchOperation",
        ),
    ] {
        let c = base.for_service(signing, "");
        let mut req = axum::http::Request::builder()
            .method("POST")
            .uri(format!("{}{path}", server.endpoint))
            .header("smithy-protocol", "rpc-v2-cbor")
            .header("content-type", "application/cbor")
            .header("accept", "application/cbor")
            .body(vec![0xa0]) // an empty CBOR map
            .unwrap();
        c.sign(&mut req, std::time::SystemTime::now()).unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(
            r.headers
                .get("smithy-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("rpc-v2-cbor"),
            "{path}"
        );
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/cbor"),
            "{path}"
        );
        // A CBOR map (major type 5) naming the error, not a JSON document.
        assert_eq!(
            r.body.first().map(|b| b >> 5),
            Some(5),
            "{path}: {:?}",
            r.body
        );
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains("UnknownOperationException"), "{path}: {text}");
    }
}
