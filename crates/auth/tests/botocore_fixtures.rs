//! Requests signed by botocore, the signer inside the AWS CLI and boto3,
//! captured by `tests/botocore/gen_fixtures.py` (a real botocore ECS client
//! stopped just before it sends) and replayed here.

use std::time::{Duration, UNIX_EPOCH};

use flotilla_auth::{AuthError, Credentials, RequestParts};
use http::{HeaderMap, HeaderName, HeaderValue};

struct Fixture {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    now: u64,
}

fn fixtures() -> Vec<Fixture> {
    let text = include_str!("botocore/fixtures.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let s = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    json["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let mut headers = HeaderMap::new();
            for pair in f["headers"].as_array().unwrap() {
                headers.append(
                    HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap(),
                    HeaderValue::from_str(pair[1].as_str().unwrap()).unwrap(),
                );
            }
            Fixture {
                name: s(&f["name"]),
                method: s(&f["method"]),
                path: s(&f["path"]),
                query: s(&f["query"]),
                headers,
                body: hex::decode(f["body_hex"].as_str().unwrap()).unwrap(),
                now: f["now"].as_u64().unwrap(),
            }
        })
        .collect()
}

fn creds() -> Credentials {
    Credentials::from_toml(
        r#"
[[principal]]
name = "cli-user"
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
account_id = "123456789012"
"#,
    )
    .unwrap()
}

fn verify(c: &Credentials, f: &Fixture, body: &[u8]) -> Result<flotilla_auth::Verified, AuthError> {
    c.verify(
        RequestParts {
            method: &f.method,
            path: &f.path,
            query: &f.query,
            headers: &f.headers,
            body,
        },
        UNIX_EPOCH + Duration::from_secs(f.now + 5),
    )
}

#[test]
fn botocore_signed_requests_verify() {
    let c = creds();
    let all = fixtures();
    assert_eq!(all.len(), 5);
    for f in &all {
        let v = verify(&c, f, &f.body).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(v.principal.name, "cli-user", "{}", f.name);
        assert_eq!(v.region, "us-west-2", "{}", f.name);
        assert_eq!(v.service, "ecs", "{}", f.name);
        assert_eq!(v.presigned, f.name.starts_with("presigned"), "{}", f.name);
    }
}

#[test]
fn botocore_signed_requests_fail_when_the_body_changes() {
    let c = creds();
    for f in fixtures().iter().filter(|f| f.method == "POST") {
        let mut body = f.body.clone();
        body.push(b' ');
        assert_eq!(
            verify(&c, f, &body).unwrap_err(),
            AuthError::SignatureDoesNotMatch,
            "{}",
            f.name
        );
    }
}
