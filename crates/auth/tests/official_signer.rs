//! Requests signed by the official Rust signer (`aws-sigv4`, what the AWS
//! SDK for Rust and our agent use) must verify here, and any change to a
//! signed part must not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use flotilla_auth::{AuthError, Credentials, RequestParts, Verified};
use http::{HeaderMap, HeaderValue, Request};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113.ListClusters";

fn creds() -> Credentials {
    Credentials::from_toml(&format!(
        r#"
[[principal]]
name = "alice"
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"
account_id = "123456789012"
"#
    ))
    .unwrap()
}

/// 2026-01-01T00:00:00Z
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Signs `req` in place with `aws-sigv4`, the way an SDK client would.
fn sign_with(
    req: &mut Request<Vec<u8>>,
    akid: &str,
    secret: &str,
    token: Option<&str>,
    settings: SigningSettings,
    body: SignableBody<'_>,
    time: SystemTime,
) {
    // An HTTP client sends Host from the URI's authority; add it first so
    // the request we verify carries exactly what was signed.
    if !req.headers().contains_key("host") {
        let authority = req.uri().authority().unwrap().as_str().to_owned();
        req.headers_mut()
            .insert("host", HeaderValue::from_str(&authority).unwrap());
    }
    let identity = AwsCredentials::new(akid, secret, token.map(str::to_owned), None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-west-2")
        .name("ecs")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        req.uri().to_string(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(req);
}

fn sign_default(req: &mut Request<Vec<u8>>, time: SystemTime) {
    let body = req.body().clone();
    sign_with(
        req,
        AKID,
        SECRET,
        None,
        SigningSettings::default(),
        SignableBody::Bytes(&body),
        time,
    );
}

fn verify_at(
    c: &Credentials,
    req: &Request<Vec<u8>>,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    c.verify(
        RequestParts {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            headers: req.headers(),
            body: req.body(),
        },
        now,
    )
}

fn ecs_post() -> Request<Vec<u8>> {
    Request::post("http://127.0.0.1:8080/")
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", ECS_TARGET)
        .body(br#"{"maxResults":10}"#.to_vec())
        .unwrap()
}

fn presign_settings(expires: Duration) -> SigningSettings {
    let mut s = SigningSettings::default();
    s.signature_location = SignatureLocation::QueryParams;
    s.expires_in = Some(expires);
    s
}

// ---- requests that must verify ------------------------------------------

#[test]
fn ecs_json_post_verifies() {
    let c = creds();
    let mut req = ecs_post();
    sign_default(&mut req, t0());
    let v = verify_at(&c, &req, t0() + Duration::from_secs(3)).unwrap();
    assert_eq!(v.principal.name, "alice");
    assert_eq!(v.principal.account_id, "123456789012");
    assert_eq!(v.principal.access_key_id, AKID);
    assert_eq!(v.region, "us-west-2");
    assert_eq!(v.service, "ecs");
    assert_eq!(v.signed_at, t0());
    assert!(!v.presigned);
    v.expect_service("ecs").unwrap();
    let e = v.expect_service("logs").unwrap_err();
    assert_eq!(e.aws_code(), "InvalidSignatureException");
    assert_eq!(
        e.to_string(),
        "Credential should be scoped to correct service: 'logs'. "
    );

    // Again: now served from the signing-key cache, same answer.
    assert_eq!(verify_at(&c, &req, t0()).unwrap(), v);
}

#[test]
fn post_with_content_sha256_header_verifies() {
    let mut req = ecs_post();
    let body = req.body().clone();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    sign_with(
        &mut req,
        AKID,
        SECRET,
        None,
        settings,
        SignableBody::Bytes(&body),
        t0(),
    );
    assert!(req.headers().contains_key("x-amz-content-sha256"));
    verify_at(&creds(), &req, t0()).unwrap();

    // The header's hash is checked against the body, so a new body fails
    // even though the header itself is still the signed one.
    *req.body_mut() = br#"{"maxResults":11}"#.to_vec();
    let e = verify_at(&creds(), &req, t0()).unwrap_err();
    assert_eq!(e, AuthError::ContentSha256Mismatch);
    assert_eq!(e.aws_code(), "InvalidSignatureException");
}

#[test]
fn unsigned_payload_verifies_only_when_signed_that_way() {
    let mut req = ecs_post();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    sign_with(
        &mut req,
        AKID,
        SECRET,
        None,
        settings,
        SignableBody::UnsignedPayload,
        t0(),
    );
    assert_eq!(req.headers()["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
    verify_at(&creds(), &req, t0()).unwrap();

    // A request signed over the body cannot be relabelled UNSIGNED-PAYLOAD.
    let mut req = ecs_post();
    sign_default(&mut req, t0());
    req.headers_mut().insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    assert_eq!(
        verify_at(&creds(), &req, t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
}

#[test]
fn get_with_query_string_verifies() {
    let c = creds();
    for uri in [
        "http://localhost:8080/v1/things?b=2&a=1&a=0",
        "http://localhost:8080/v1/a%20b/c%2Fd/~tilde?x=a%2Fb%20c&y=%E2%9C%93&empty=&flag",
        "http://localhost:8080/v1/things?plus=a+b&star=*&colon=%3A&tilde=~",
        "http://localhost:8080/v1/../v1/./x//y?q=1",
        "http://localhost:8080",
    ] {
        let mut req = Request::get(uri).body(Vec::new()).unwrap();
        sign_default(&mut req, t0());
        let v = verify_at(&c, &req, t0());
        assert!(v.is_ok(), "{uri}: {v:?}");
    }
}

#[test]
fn session_token_request_verifies() {
    let mut req = ecs_post();
    let body = req.body().clone();
    sign_with(
        &mut req,
        AKID,
        SECRET,
        Some("FwoGZXIvYXdzEXAMPLETOKEN//////////wEaDEXAMPLE+/="),
        SigningSettings::default(),
        SignableBody::Bytes(&body),
        t0(),
    );
    assert!(req.headers().contains_key("x-amz-security-token"));
    let v = verify_at(&creds(), &req, t0()).unwrap();
    assert_eq!(v.principal.name, "alice");

    // The token is signed: it cannot be swapped.
    req.headers_mut()
        .insert("x-amz-security-token", HeaderValue::from_static("other"));
    assert_eq!(
        verify_at(&creds(), &req, t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
}

#[test]
fn presigned_get_verifies_and_expires() {
    let c = creds();
    for body in [SignableBody::Bytes(b""), SignableBody::UnsignedPayload] {
        let mut req = Request::get("http://127.0.0.1:8080/agent/ws?cluster=default&instance=i-1")
            .body(Vec::new())
            .unwrap();
        sign_with(
            &mut req,
            AKID,
            SECRET,
            None,
            presign_settings(mins(15)),
            body,
            t0(),
        );
        assert!(!req.headers().contains_key("authorization"));
        assert!(req.uri().query().unwrap().contains("X-Amz-Signature="));

        // The WebSocket client adds its handshake headers after presigning.
        for (k, v) in [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ] {
            req.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        let v = verify_at(&c, &req, t0() + mins(15)).unwrap();
        assert!(v.presigned);
        assert_eq!(v.service, "ecs");

        let e = verify_at(&c, &req, t0() + mins(15) + Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.aws_code(), "InvalidSignatureException");
        assert_eq!(
            e.to_string(),
            "Signature expired: the presigned request was valid until 20260101T001500Z \
             (20260101T000000Z + 900 sec.) and it is now 20260101T001501Z."
        );
        let e = verify_at(&c, &req, t0() - mins(16)).unwrap_err();
        assert!(matches!(e, AuthError::SignatureNotYetCurrent { .. }), "{e}");

        // Any query change breaks it.
        let tampered = req
            .uri()
            .to_string()
            .replace("instance=i-1", "instance=i-2");
        *req.uri_mut() = tampered.parse().unwrap();
        assert_eq!(
            verify_at(&c, &req, t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
    }
}

#[test]
fn presigned_with_session_token_verifies() {
    let mut req = Request::get("http://127.0.0.1:8080/agent/ws")
        .body(Vec::new())
        .unwrap();
    sign_with(
        &mut req,
        AKID,
        SECRET,
        Some("session-token"),
        presign_settings(mins(5)),
        SignableBody::Bytes(b""),
        t0(),
    );
    assert!(req
        .uri()
        .query()
        .unwrap()
        .contains("X-Amz-Security-Token=session-token"));
    verify_at(&creds(), &req, t0()).unwrap();
}

#[test]
fn presigned_limits_and_missing_parameters() {
    let c = creds();
    let mut req = Request::get("http://127.0.0.1:8080/agent/ws")
        .body(Vec::new())
        .unwrap();
    sign_with(
        &mut req,
        AKID,
        SECRET,
        None,
        presign_settings(Duration::from_secs(604_801)),
        SignableBody::Bytes(b""),
        t0(),
    );
    let e = verify_at(&c, &req, t0()).unwrap_err();
    assert_eq!(e.aws_code(), "IncompleteSignatureException");
    assert!(e.to_string().contains("X-Amz-Expires"), "{e}");

    let mut req = Request::get("http://127.0.0.1:8080/agent/ws")
        .body(Vec::new())
        .unwrap();
    sign_with(
        &mut req,
        AKID,
        SECRET,
        None,
        presign_settings(mins(5)),
        SignableBody::Bytes(b""),
        t0(),
    );
    let query = req.uri().query().unwrap().to_owned();
    let without_date: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("X-Amz-Date="))
        .collect();
    *req.uri_mut() = format!("http://127.0.0.1:8080/agent/ws?{}", without_date.join("&"))
        .parse()
        .unwrap();
    let e = verify_at(&c, &req, t0()).unwrap_err();
    assert_eq!(e.aws_code(), "IncompleteSignatureException");
    assert!(
        e.to_string()
            .starts_with("Query-string authentication version 4 requires"),
        "{e}"
    );
}

#[test]
fn header_order_case_and_whitespace_do_not_matter() {
    let c = creds();
    let mut req = Request::post("http://127.0.0.1:8080/")
        .header("x-amz-target", ECS_TARGET)
        .header("content-type", "application/x-amz-json-1.1")
        .header("my-header", "  spaced    out   value ")
        .header("my-multi", "one")
        .header("my-multi", "two")
        .body(b"{}".to_vec())
        .unwrap();
    sign_default(&mut req, t0());

    // Rebuild the headers in reverse order with differently spaced values, as
    // a proxy might; the canonical form is the same.
    let mut reordered = HeaderMap::new();
    let pairs: Vec<_> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in pairs.into_iter().rev() {
        let v = if k == "my-header" {
            HeaderValue::from_static("spaced out value")
        } else {
            v
        };
        reordered.append(k, v);
    }
    // `rev` also reversed the two my-multi values; restore their order,
    // since the order of repeated values is significant.
    reordered.remove("my-multi");
    reordered.append("my-multi", HeaderValue::from_static("one"));
    reordered.append("my-multi", HeaderValue::from_static("two"));
    let original = std::mem::replace(req.headers_mut(), reordered);
    verify_at(&c, &req, t0()).unwrap();

    // Swapping the repeated values changes the canonical request.
    req.headers_mut().remove("my-multi");
    req.headers_mut()
        .append("my-multi", HeaderValue::from_static("two"));
    req.headers_mut()
        .append("my-multi", HeaderValue::from_static("one"));
    assert_eq!(
        verify_at(&c, &req, t0()).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    *req.headers_mut() = original;
    verify_at(&c, &req, t0()).unwrap();
}

/// The AWS SigV4 test suite's `get-vanilla` case: the published signature,
/// the one `aws-sigv4` computes, and ours must all agree.
#[test]
fn known_answer_get_vanilla() {
    const EXPECTED: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let c = Credentials::from_toml(&format!(
        "[[principal]]\nname = \"suite\"\naccess_key_id = \"AKIDEXAMPLE\"\n\
         secret_access_key = \"{secret}\"\naccount_id = \"111122223333\"\n"
    ))
    .unwrap();
    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z

    let identity = AwsCredentials::new("AKIDEXAMPLE", secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("service")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "GET",
        "https://example.amazonaws.com/",
        [("host", "example.amazonaws.com")].into_iter(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (_, official) = sign(signable, &params).unwrap().into_parts();
    assert_eq!(official, EXPECTED);

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
    headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={EXPECTED}"
        ))
        .unwrap(),
    );
    let req = RequestParts {
        method: "GET",
        path: "/",
        query: "",
        headers: &headers,
        body: b"",
    };
    let v = c.verify(req, time).unwrap();
    assert_eq!(v.principal.name, "suite");
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "service");

    // One bit off in the signature and it fails.
    let bad = format!("{}0", &EXPECTED[..63]);
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={bad}"
        ))
        .unwrap(),
    );
    let req = RequestParts {
        method: "GET",
        path: "/",
        query: "",
        headers: &headers,
        body: b"",
    };
    assert_eq!(
        c.verify(req, time).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
}

// ---- requests that must not verify --------------------------------------

#[test]
fn missing_authentication() {
    let req = ecs_post();
    let e = verify_at(&creds(), &req, t0()).unwrap_err();
    assert_eq!(e, AuthError::MissingAuthenticationToken);
    assert_eq!(e.aws_code(), "MissingAuthenticationTokenException");
    assert_eq!(e.to_string(), "Missing Authentication Token");
    assert_eq!(e.http_status(), 400);
}

#[test]
fn unknown_access_key() {
    let mut req = ecs_post();
    let body = req.body().clone();
    sign_with(
        &mut req,
        "AKIAUNKNOWNKEY000000",
        SECRET,
        None,
        SigningSettings::default(),
        SignableBody::Bytes(&body),
        t0(),
    );
    let e = verify_at(&creds(), &req, t0()).unwrap_err();
    assert_eq!(e.aws_code(), "UnrecognizedClientException");
    assert_eq!(
        e.to_string(),
        "The security token included in the request is invalid."
    );
    assert!(
        matches!(e, AuthError::UnrecognizedClient { ref access_key_id } if access_key_id == "AKIAUNKNOWNKEY000000")
    );
}

#[test]
fn wrong_secret() {
    let mut req = ecs_post();
    let body = req.body().clone();
    sign_with(
        &mut req,
        AKID,
        "not-the-secret",
        None,
        SigningSettings::default(),
        SignableBody::Bytes(&body),
        t0(),
    );
    let e = verify_at(&creds(), &req, t0()).unwrap_err();
    assert_eq!(e.aws_code(), "InvalidSignatureException");
    assert_eq!(
        e.to_string(),
        "The request signature we calculated does not match the signature you provided. Check your \
         AWS Secret Access Key and signing method. Consult the service documentation for details."
    );
}

#[test]
fn clock_skew_both_ways() {
    let c = creds();
    let mut req = ecs_post();
    sign_default(&mut req, t0());
    // Exactly 15 minutes either way is still accepted.
    verify_at(&c, &req, t0() + mins(15)).unwrap();
    verify_at(&c, &req, t0() - mins(15)).unwrap();

    let e = verify_at(&c, &req, t0() + mins(30)).unwrap_err();
    assert_eq!(e.aws_code(), "InvalidSignatureException");
    assert_eq!(
        e.to_string(),
        "Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z \
         (20260101T003000Z - 15 min.)"
    );
    assert!(e.is_clock_error());

    let e = verify_at(&c, &req, t0() - mins(30)).unwrap_err();
    assert_eq!(e.aws_code(), "InvalidSignatureException");
    assert_eq!(
        e.to_string(),
        "Signature not yet current: 20260101T000000Z is still later than 20251231T234500Z \
         (20251231T233000Z + 15 min.)"
    );
}

#[test]
fn tampering_is_detected() {
    let c = creds();
    let mut signed = ecs_post();
    sign_default(&mut signed, t0());
    verify_at(&c, &signed, t0()).unwrap();

    let mut body = signed.clone();
    *body.body_mut() = br#"{"maxResults":100}"#.to_vec();
    let mut target = signed.clone();
    target.headers_mut().insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DeleteCluster"),
    );
    let mut host = signed.clone();
    host.headers_mut()
        .insert("host", HeaderValue::from_static("127.0.0.1:9090"));
    let mut path = signed.clone();
    *path.uri_mut() = "http://127.0.0.1:8080/other".parse().unwrap();
    let mut query = signed.clone();
    *query.uri_mut() = "http://127.0.0.1:8080/?a=1".parse().unwrap();
    let mut method = signed.clone();
    *method.method_mut() = http::Method::PUT;
    let mut date = signed.clone();
    date.headers_mut()
        .insert("x-amz-date", HeaderValue::from_static("20260101T000001Z"));
    let mut content_type = signed.clone();
    content_type
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));

    for (what, req) in [
        ("body", &body),
        ("x-amz-target", &target),
        ("host", &host),
        ("path", &path),
        ("query", &query),
        ("method", &method),
        ("x-amz-date", &date),
        ("content-type", &content_type),
    ] {
        assert_eq!(
            verify_at(&c, req, t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch,
            "{what}"
        );
    }
}

#[test]
fn unsigned_x_amz_headers_are_refused() {
    let mut req = Request::post("http://127.0.0.1:8080/")
        .header("content-type", "application/x-amz-json-1.1")
        .body(b"{}".to_vec())
        .unwrap();
    sign_default(&mut req, t0());
    // X-Amz-Target added after signing would choose the operation unsigned.
    req.headers_mut()
        .insert("x-amz-target", HeaderValue::from_static(ECS_TARGET));
    let e = verify_at(&creds(), &req, t0()).unwrap_err();
    assert_eq!(e.aws_code(), "IncompleteSignatureException");
    assert_eq!(
        e.to_string(),
        "There were headers present in the request which were not signed: x-amz-target"
    );
}

#[test]
fn malformed_authorization_and_scope() {
    let c = creds();
    let mut signed = ecs_post();
    sign_default(&mut signed, t0());
    let auth = signed.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();

    let cases: Vec<(String, &str)> = vec![
        ("Bearer token".into(), "Unsupported signing algorithm"),
        ("AWS4-HMAC-SHA256".into(), "requires 'Credential' parameter"),
        (
            auth.replace("Credential=", "Cred="),
            "requires 'Credential' parameter",
        ),
        (
            auth.replace("SignedHeaders=", "Signed="),
            "requires 'SignedHeaders' parameter",
        ),
        (
            auth.replace("/aws4_request", "/aws4_reqest"),
            "valid terminator",
        ),
        (auth.replace("/us-west-2/", "//"), "valid region"),
        (
            auth.replace("/20260101/", "/20260102/"),
            "Date in Credential scope does not match",
        ),
        (auth.replace("/20260101/", "/2026-01-01/"), "valid date"),
        (
            auth.replace("/20260101/", "/2026/01/01/"),
            "exactly 5 slash-delimited",
        ),
        (auth.replace("host;", ""), "'Host' must be a 'SignedHeader'"),
    ];
    for (value, expect) in cases {
        let mut req = signed.clone();
        req.headers_mut()
            .insert("authorization", HeaderValue::from_str(&value).unwrap());
        let e = verify_at(&c, &req, t0()).unwrap_err();
        assert_eq!(e.aws_code(), "IncompleteSignatureException", "{value}: {e}");
        assert!(e.to_string().contains(expect), "{value}: {e}");
    }

    let mut no_date = signed.clone();
    no_date.headers_mut().remove("x-amz-date");
    let e = verify_at(&c, &no_date, t0()).unwrap_err();
    assert_eq!(e.aws_code(), "IncompleteSignatureException");
    assert!(e.to_string().contains("'X-Amz-Date'"), "{e}");

    let mut bad_date = signed.clone();
    bad_date.headers_mut().insert(
        "x-amz-date",
        HeaderValue::from_static("2026-01-01T00:00:00Z"),
    );
    let e = verify_at(&c, &bad_date, t0()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Date must be in ISO-8601 'basic format'. Got '2026-01-01T00:00:00Z'. See http://en.wikipedia.org/wiki/ISO_8601"
    );

    // A signature that is not 64 lowercase hex digits just does not match.
    let sig = auth.rsplit_once("Signature=").unwrap().1.to_owned();
    for bad in [
        sig.to_uppercase(),
        sig[..60].to_owned(),
        format!("{sig}00"),
        "zz".repeat(32),
    ] {
        let mut req = signed.clone();
        let value = auth.replace(&sig, &bad);
        req.headers_mut()
            .insert("authorization", HeaderValue::from_str(&value).unwrap());
        assert_eq!(
            verify_at(&c, &req, t0()).unwrap_err(),
            AuthError::SignatureDoesNotMatch,
            "{bad}"
        );
    }
}

/// Replacing any single byte of a valid Authorization header must never
/// verify, and never panic.
#[test]
fn every_single_byte_change_to_the_header_fails() {
    let c = creds();
    let mut signed = ecs_post();
    sign_default(&mut signed, t0());
    let auth = signed.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    for i in 0..auth.len() {
        let mut bytes = auth.clone().into_bytes();
        bytes[i] = if bytes[i] == b'X' { b'Y' } else { b'X' };
        let mut req = signed.clone();
        req.headers_mut()
            .insert("authorization", HeaderValue::from_bytes(&bytes).unwrap());
        assert!(
            verify_at(&c, &req, t0()).is_err(),
            "byte {i}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}
