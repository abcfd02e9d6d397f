//! Server-side AWS Signature Version 4 verification.
//!
//! The server recomputes the signature the client should have produced and
//! compares. Everything hinges on building the same canonical request as the
//! client's signer, so each step below follows the official Rust signer
//! (`aws-sigv4`) and botocore, and the tests sign with `aws-sigv4` itself:
//!
//! ```text
//! METHOD \n
//! canonical URI    (path, dot segments and empty segments removed, then
//!                   percent-encoded again: "double encoding", the default
//!                   for every service but S3) \n
//! canonical query  (pairs decoded, re-encoded RFC 3986, sorted) \n
//! name:value \n    (for each signed header, values trimmed, runs of spaces
//!  …                folded, repeated headers joined with ',') \n
//! signed;headers \n
//! payload hash     (hex SHA-256 of the body, or x-amz-content-sha256)
//! ```
//!
//! Where the official signers differ, we follow `aws-sigv4`: it decodes and
//! re-encodes the query, botocore signs it as written, so a hand-built URL
//! with a non-canonical escape (`%7E` for `~`) signed by botocore does not
//! verify. URLs built by any SDK are canonical and verify either way.
//!
//! The canonical request is streamed straight into SHA-256, so a typical
//! `POST /` costs no allocation beyond the `Verified` it returns.

use std::sync::Arc;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::amzdate::{self, UnixSeconds};
use crate::{AuthError, Credentials, Principal};

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm supported (SigV4a's `AWS4-ECDSA-P256-SHA256` is not).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far a request's `X-Amz-Date` may be from the server's clock, either
/// way. AWS documents 15 minutes for SigV4 (some services, ECS among them,
/// answer with 5 in practice); 15 is the project's contract.
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// The longest `X-Amz-Expires` a presigned request may carry (7 days), as in
/// AWS.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 7 * 24 * 60 * 60;

const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// RFC 3986 unreserved characters are the only ones left as they are.
const ENCODE_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// As [`ENCODE_QUERY`], keeping '/' so path segments stay separated.
const ENCODE_PATH: &AsciiSet = &ENCODE_QUERY.remove(b'/');

/// The parts of an HTTP request that authentication looks at, borrowed from
/// whatever server framework received it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `"POST"`, `"GET"`, …, as on the request line.
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded (axum:
    /// `uri.path()`).
    pub path: &'a str,
    /// The raw query string without the `?`, `""` if none (axum:
    /// `uri.query().unwrap_or("")`).
    pub query: &'a str,
    /// All request headers. Must contain `host` (for HTTP/2, copy the
    /// `:authority` into it before calling).
    pub headers: &'a HeaderMap,
    /// The complete body.
    pub body: &'a [u8],
}

/// Who signed a request, and for which region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principal whose secret produced the signature.
    pub principal: Arc<Principal>,
    /// The region in the credential scope: requests act on this region's
    /// resources.
    pub region: String,
    /// The service in the credential scope (`"ecs"`, …).
    pub service: String,
    /// The request's `X-Amz-Date`.
    pub signed_at: SystemTime,
    /// Whether the signature came from the query string (a presigned URL)
    /// rather than the `Authorization` header.
    pub presigned: bool,
}

impl Verified {
    /// Checks the credential scope's service, with the message AWS sends when
    /// a request signed for one service reaches another.
    pub fn expect_service(&self, expected: &str) -> Result<(), AuthError> {
        if self.service == expected {
            Ok(())
        } else {
            Err(AuthError::ScopeMismatch(format!(
                "Credential should be scoped to correct service: '{expected}'. "
            )))
        }
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 …` header, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// `Credential=…`, split into its parts.
    pub credential: CredentialScope<'a>,
    /// `SignedHeaders=…`, the `;`-separated lowercase header names, verbatim.
    pub signed_headers: &'a str,
    /// `Signature=…`, hex, verbatim.
    pub signature: &'a str,
}

/// `AKID/YYYYMMDD/region/service/aws4_request`, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialScope<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDD/region/service/aws4_request`, the scope as it appears in
    /// the string to sign.
    pub scope: &'a str,
    /// The whole value, key id included.
    pub credential: &'a str,
}

impl<'a> CredentialScope<'a> {
    /// Parses a `Credential` value. Checks shape only; whether the date
    /// matches the request's and the key exists is up to [`verify`].
    pub fn parse(credential: &'a str) -> Result<CredentialScope<'a>, AuthError> {
        let malformed = || {
            AuthError::IncompleteSignature(format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. \
                 keyid/date/region/service/term, got '{}'",
                truncate(credential, 256)
            ))
        };
        let (access_key_id, scope) = credential.split_once('/').ok_or_else(malformed)?;
        let mut parts = scope.split('/');
        let (Some(date), Some(region), Some(service), Some(terminator), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        if access_key_id.is_empty() {
            return Err(AuthError::IncompleteSignature(
                "Credential must name an access key id, e.g. \
                 keyid/date/region/service/term"
                    .into(),
            ));
        }
        if !amzdate::is_valid_date(date) {
            return Err(AuthError::IncompleteSignature(format!(
                "Credential should be scoped to a valid date (YYYYMMDD), not '{}'. ",
                truncate(date, 64)
            )));
        }
        if !is_scope_word(region) {
            return Err(AuthError::IncompleteSignature(
                "Credential should be scoped to a valid region. ".into(),
            ));
        }
        if !is_scope_word(service) {
            return Err(AuthError::IncompleteSignature(
                "Credential should be scoped to correct service. ".into(),
            ));
        }
        if terminator != "aws4_request" {
            return Err(AuthError::IncompleteSignature(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
                truncate(terminator, 64)
            )));
        }
        Ok(CredentialScope {
            access_key_id,
            date,
            region,
            service,
            scope,
            credential,
        })
    }
}

/// Regions and service names: lowercase letters, digits and '-'. Anything
/// else cannot be a real scope and would only make messages and cache keys
/// odd.
fn is_scope_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses an `Authorization` header value. A fuzzing entry point as well as
/// the first step of [`verify`]; never panics.
pub fn parse_authorization(header: &str) -> Result<Authorization<'_>, AuthError> {
    parse_authorization_inner(header, false)
}

/// `date_missing` folds the "no X-Amz-Date" complaint into the same message
/// as missing parameters, the way AWS reports everything missing at once.
fn parse_authorization_inner(
    header: &str,
    date_missing: bool,
) -> Result<Authorization<'_>, AuthError> {
    let trimmed = header.trim_matches(|c| c == ' ' || c == '\t');
    let (algorithm, rest) = match trimmed.split_once([' ', '\t']) {
        Some((a, r)) => (a, r),
        None => (trimmed, ""),
    };
    if algorithm != ALGORITHM {
        return Err(AuthError::IncompleteSignature(format!(
            "Unsupported signing algorithm '{}' in the Authorization header; only {ALGORITHM} is supported.",
            truncate(algorithm, 64)
        )));
    }

    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim_matches(|c| c == ' ' || c == '\t');
        if part.is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            return Err(AuthError::IncompleteSignature(format!(
                "'{}' not a valid key=value pair (missing equal-sign) in Authorization header: '{}'.",
                truncate(part, 128),
                truncate(header, 256)
            )));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            // AWS ignores parameters it does not know; so do we.
            _ => continue,
        };
        if slot.is_some() {
            return Err(AuthError::IncompleteSignature(format!(
                "Authorization header has more than one '{key}' parameter."
            )));
        }
        *slot = Some(value);
    }

    let mut missing = String::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if value.is_none_or(str::is_empty) {
            missing.push_str("Authorization header requires '");
            missing.push_str(name);
            missing.push_str("' parameter. ");
        }
    }
    if date_missing {
        missing.push_str("Authorization header requires existence of a 'X-Amz-Date' header. ");
    }
    let (Some(credential), Some(signed_headers), Some(signature), true) =
        (credential, signed_headers, signature, missing.is_empty())
    else {
        missing.push_str("Authorization=");
        missing.push_str(truncate(header, 256));
        return Err(AuthError::IncompleteSignature(missing));
    };
    Ok(Authorization {
        credential: CredentialScope::parse(credential)?,
        signed_headers,
        signature,
    })
}

/// Verifies a SigV4-signed request against `creds` at time `now`.
///
/// Header auth (`Authorization: AWS4-HMAC-SHA256 …` with `X-Amz-Date`) is
/// used when the header is present; otherwise query-string auth (a presigned
/// URL: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature`).
///
/// `X-Amz-Security-Token` is accepted and, like any header or parameter,
/// must be covered by the signature, but is not checked against anything:
/// Flotilla issues no session credentials yet, so the access key id alone
/// identifies the caller.
pub fn verify(
    creds: &Credentials,
    req: RequestParts<'_>,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    let now = amzdate::from_system_time(now);
    if let Some(value) = req.headers.get(http::header::AUTHORIZATION) {
        let header = value.to_str().map_err(|_| {
            AuthError::IncompleteSignature(
                "Authorization header contains characters that are not visible ASCII.".into(),
            )
        })?;
        verify_header_auth(creds, &req, header, now)
    } else if is_presigned(req.query) {
        verify_presigned(creds, &req, now)
    } else {
        Err(AuthError::MissingAuthenticationToken)
    }
}

impl Credentials {
    /// Same as [`verify`]`(self, req, now)`.
    pub fn verify(&self, req: RequestParts<'_>, now: SystemTime) -> Result<Verified, AuthError> {
        verify(self, req, now)
    }
}

fn verify_header_auth(
    creds: &Credentials,
    req: &RequestParts<'_>,
    header: &str,
    now: UnixSeconds,
) -> Result<Verified, AuthError> {
    let amz_date = req.headers.get("x-amz-date");
    let auth = parse_authorization_inner(header, amz_date.is_none())?;
    let amz_date = amz_date
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad_date("<not visible ASCII>"))?;
    let signed_at = check_date(amz_date, &auth.credential)?;
    let principal = creds.lookup(auth.credential.access_key_id).ok_or_else(|| {
        AuthError::UnrecognizedClient {
            access_key_id: truncate(auth.credential.access_key_id, 128).to_owned(),
        }
    })?;
    check_skew(signed_at, now)?;
    check_signed_headers(req.headers, auth.signed_headers)?;

    let mut body_hash = [0u8; 64];
    let payload = match declared_payload_hash(req)? {
        Declared::Hash(h) => h,
        // No x-amz-content-sha256 header: the body's own hash is what was
        // signed, as for every non-S3 service.
        Declared::Nothing => hex_sha256(req.body, &mut body_hash),
    };
    check_signature(
        creds, principal, req, &auth, amz_date, payload, signed_at, false,
    )
}

fn verify_presigned(
    creds: &Credentials,
    req: &RequestParts<'_>,
    now: UnixSeconds,
) -> Result<Verified, AuthError> {
    let params = PresignedParams::from_query(req.query)?;
    let credential = CredentialScope::parse(&params.credential)?;
    let signed_at = check_date(&params.date, &credential)?;
    let principal =
        creds
            .lookup(credential.access_key_id)
            .ok_or_else(|| AuthError::UnrecognizedClient {
                access_key_id: truncate(credential.access_key_id, 128).to_owned(),
            })?;

    let expires: u64 = params
        .expires
        .parse()
        .ok()
        .filter(|e| (1..=MAX_PRESIGNED_EXPIRES_SECS).contains(e))
        .ok_or_else(|| {
            AuthError::IncompleteSignature(format!(
                "X-Amz-Expires must be a whole number of seconds from 1 to {MAX_PRESIGNED_EXPIRES_SECS} \
                 (one week), got '{}'.",
                truncate(&params.expires, 64)
            ))
        })?;
    if signed_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(not_yet_current(signed_at, now));
    }
    // `expires` ≤ 604800, so the cast cannot wrap.
    let valid_until = signed_at.saturating_add(expires as i64);
    if now > valid_until {
        return Err(AuthError::PresignedUrlExpired {
            signed_at: amzdate::format(signed_at),
            expires_secs: expires,
            valid_until: amzdate::format(valid_until),
            now: amzdate::format(now),
        });
    }
    check_signed_headers(req.headers, &params.signed_headers)?;

    let auth = Authorization {
        credential,
        signed_headers: &params.signed_headers,
        signature: &params.signature,
    };
    let payload = match declared_payload_hash(req)? {
        Declared::Hash(h) => {
            return check_signature(
                creds,
                principal,
                req,
                &auth,
                &params.date,
                h,
                signed_at,
                true,
            )
        }
        Declared::Nothing => {
            let mut body_hash = [0u8; 64];
            let computed = hex_sha256(req.body, &mut body_hash);
            match check_signature(
                creds,
                principal,
                req,
                &auth,
                &params.date,
                computed,
                signed_at,
                true,
            ) {
                Err(AuthError::SignatureDoesNotMatch) => UNSIGNED_PAYLOAD,
                other => return other,
            }
        }
    };
    // A presigner chooses between hashing the body and UNSIGNED-PAYLOAD
    // without saying which (S3 presigners use the latter, `aws-sigv4` either).
    // Accept both: each only matches if it is what was signed, and a presigned
    // request normally has an empty body anyway.
    check_signature(
        creds,
        principal,
        req,
        &auth,
        &params.date,
        payload,
        signed_at,
        true,
    )
}

/// Presigned-URL parameters, percent-decoded.
struct PresignedParams {
    credential: String,
    date: String,
    expires: String,
    signed_headers: String,
    signature: String,
}

const PRESIGNED_REQUIRED: &str = "Query-string authentication version 4 requires the X-Amz-Algorithm, \
     X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.";

fn is_presigned(query: &str) -> bool {
    query_pairs(query).any(|(k, _)| {
        matches!(
            &*k,
            "X-Amz-Algorithm" | "X-Amz-Credential" | "X-Amz-Signature" | "X-Amz-SignedHeaders"
        )
    })
}

impl PresignedParams {
    fn from_query(query: &str) -> Result<PresignedParams, AuthError> {
        let (
            mut algorithm,
            mut credential,
            mut date,
            mut expires,
            mut signed_headers,
            mut signature,
        ) = (None, None, None, None, None, None);
        for (key, value) in query_pairs(query) {
            let slot = match &*key {
                "X-Amz-Algorithm" => &mut algorithm,
                "X-Amz-Credential" => &mut credential,
                "X-Amz-Date" => &mut date,
                "X-Amz-Expires" => &mut expires,
                "X-Amz-SignedHeaders" => &mut signed_headers,
                "X-Amz-Signature" => &mut signature,
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthError::IncompleteSignature(format!(
                    "Query-string authentication parameter {key} appears more than once."
                )));
            }
            *slot = Some(value.into_owned());
        }
        let (
            Some(algorithm),
            Some(credential),
            Some(date),
            Some(expires),
            Some(signed_headers),
            Some(signature),
        ) = (
            algorithm,
            credential,
            date,
            expires,
            signed_headers,
            signature,
        )
        else {
            return Err(AuthError::IncompleteSignature(PRESIGNED_REQUIRED.into()));
        };
        if algorithm != ALGORITHM {
            return Err(AuthError::IncompleteSignature(format!(
                "X-Amz-Algorithm only supports \"{ALGORITHM}\", got '{}'.",
                truncate(&algorithm, 64)
            )));
        }
        if signed_headers.is_empty() || signature.is_empty() {
            return Err(AuthError::IncompleteSignature(PRESIGNED_REQUIRED.into()));
        }
        Ok(PresignedParams {
            credential,
            date,
            expires,
            signed_headers,
            signature,
        })
    }
}

fn bad_date(got: &str) -> AuthError {
    AuthError::IncompleteSignature(format!(
        "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
        truncate(got, 64)
    ))
}

/// Parses the request date and checks the credential scope's date is its day.
fn check_date(amz_date: &str, scope: &CredentialScope<'_>) -> Result<UnixSeconds, AuthError> {
    let signed_at = amzdate::parse(amz_date).ok_or_else(|| bad_date(amz_date))?;
    // `parse` accepted it, so it is 16 ASCII bytes.
    let day = amz_date.get(..8).unwrap_or_default();
    if scope.date != day {
        return Err(AuthError::IncompleteSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '{}' != '{day}', from '{amz_date}'.",
            scope.date
        )));
    }
    Ok(signed_at)
}

fn check_skew(signed_at: UnixSeconds, now: UnixSeconds) -> Result<(), AuthError> {
    let earliest = now.saturating_sub(MAX_CLOCK_SKEW_SECS);
    if signed_at < earliest {
        return Err(AuthError::SignatureExpired {
            signed_at: amzdate::format(signed_at),
            earliest: amzdate::format(earliest),
            now: amzdate::format(now),
            skew_minutes: (MAX_CLOCK_SKEW_SECS / 60) as u64,
        });
    }
    if signed_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(not_yet_current(signed_at, now));
    }
    Ok(())
}

fn not_yet_current(signed_at: UnixSeconds, now: UnixSeconds) -> AuthError {
    AuthError::SignatureNotYetCurrent {
        signed_at: amzdate::format(signed_at),
        latest: amzdate::format(now.saturating_add(MAX_CLOCK_SKEW_SECS)),
        now: amzdate::format(now),
        skew_minutes: (MAX_CLOCK_SKEW_SECS / 60) as u64,
    }
}

/// Headers AWS signers may legitimately leave unsigned although they start
/// with `x-amz-`: `aws-sigv4` skips the first two on presigned URLs, and the
/// content hash is checked against the body (or is itself in the canonical
/// request) whether signed or not.
const UNSIGNED_X_AMZ_ALLOWED: [&str; 3] = [
    "x-amz-user-agent",
    "x-amz-checksum-mode",
    "x-amz-content-sha256",
];

/// `SignedHeaders` must name `host` (so a request cannot be replayed against
/// another endpoint) and every `x-amz-*` header present: `X-Amz-Target`
/// selects the operation, so an unsigned one would let a captured request be
/// replayed as a different call. Every AWS SDK signs them all.
fn check_signed_headers(headers: &HeaderMap, signed_headers: &str) -> Result<(), AuthError> {
    let is_signed = |name: &str| signed_headers.split(';').any(|h| h == name);
    if !is_signed("host") {
        return Err(AuthError::IncompleteSignature(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    if !headers.contains_key(http::header::HOST) {
        return Err(AuthError::IncompleteSignature(
            "The request has no Host header, which SigV4 requires.".into(),
        ));
    }
    if signed_headers
        .split(';')
        .any(|h| h.is_empty() || h.len() > 256)
    {
        return Err(AuthError::IncompleteSignature(format!(
            "SignedHeaders must be a ';'-separated list of header names, got '{}'.",
            truncate(signed_headers, 256)
        )));
    }
    let mut unsigned = String::new();
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-amz-") && !UNSIGNED_X_AMZ_ALLOWED.contains(&name) && !is_signed(name)
        {
            // The iterator yields each name once, however many values it has.
            if !unsigned.is_empty() {
                unsigned.push_str(", ");
            }
            unsigned.push_str(name);
        }
    }
    if !unsigned.is_empty() {
        return Err(AuthError::IncompleteSignature(format!(
            "There were headers present in the request which were not signed: {unsigned}"
        )));
    }
    Ok(())
}

/// What `x-amz-content-sha256` says the payload hash is.
enum Declared<'a> {
    /// The header is absent.
    Nothing,
    /// `UNSIGNED-PAYLOAD`, or a hex hash already checked against the body.
    Hash(&'a str),
}

/// Reads `x-amz-content-sha256`, checking a hex hash against the body (an
/// unchecked one would let a captured request carry a different body).
/// `UNSIGNED-PAYLOAD` is returned as is: it ends up in the canonical
/// request, so it only verifies if the client signed it that way.
fn declared_payload_hash<'a>(req: &RequestParts<'a>) -> Result<Declared<'a>, AuthError> {
    let Some(value) = req.headers.get("x-amz-content-sha256") else {
        return Ok(Declared::Nothing);
    };
    let value = value.to_str().unwrap_or("");
    if value == UNSIGNED_PAYLOAD {
        return Ok(Declared::Hash(UNSIGNED_PAYLOAD));
    }
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut buf = [0u8; 64];
        if !hex_sha256(req.body, &mut buf).eq_ignore_ascii_case(value) {
            return Err(AuthError::ContentSha256Mismatch);
        }
        return Ok(Declared::Hash(value));
    }
    if value.starts_with("STREAMING-") {
        return Err(AuthError::IncompleteSignature(format!(
            "x-amz-content-sha256 '{}' (chunked payload signing) is not supported; sign the whole body.",
            truncate(value, 64)
        )));
    }
    Err(AuthError::IncompleteSignature(format!(
        "x-amz-content-sha256 must be the hex SHA-256 of the body or UNSIGNED-PAYLOAD, got '{}'.",
        truncate(value, 80)
    )))
}

#[allow(clippy::too_many_arguments)]
fn check_signature(
    creds: &Credentials,
    principal: &Arc<Principal>,
    req: &RequestParts<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    payload_hash: &str,
    signed_at: UnixSeconds,
    presigned: bool,
) -> Result<Verified, AuthError> {
    // The signature is 64 lowercase hex digits, as every signer writes it;
    // anything else simply does not match (accepting uppercase would make
    // two spellings of one signature valid).
    let mut provided = [0u8; 32];
    let is_lower_hex = auth
        .signature
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_lower_hex || hex::decode_to_slice(auth.signature, &mut provided).is_err() {
        return Err(AuthError::SignatureDoesNotMatch);
    }

    let mut canonical = Sha256::new();
    write_canonical_request(
        &mut canonical,
        req,
        auth.signed_headers,
        presigned,
        payload_hash,
    );
    let mut canonical_hash = [0u8; 64];
    let canonical_hash = hex_digest(canonical.finalize().into(), &mut canonical_hash);

    let credential = auth.credential.credential;
    let cached = creds.cached_signing_key(credential);
    let key =
        cached.unwrap_or_else(|| signing_key(principal.secret_access_key(), &auth.credential));
    let mut mac = new_hmac(&key);
    mac.update(ALGORITHM.as_bytes());
    mac.update(b"\n");
    mac.update(amz_date.as_bytes());
    mac.update(b"\n");
    mac.update(auth.credential.scope.as_bytes());
    mac.update(b"\n");
    mac.update(canonical_hash.as_bytes());
    // Constant time, so response timing reveals nothing about how much of a
    // guessed signature was right.
    mac.verify_slice(&provided)
        .map_err(|_| AuthError::SignatureDoesNotMatch)?;

    if cached.is_none() {
        creds.cache_signing_key(credential, key);
    }
    Ok(Verified {
        principal: Arc::clone(principal),
        region: auth.credential.region.to_owned(),
        service: auth.credential.service.to_owned(),
        signed_at: amzdate::to_system_time(signed_at),
        presigned,
    })
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
fn signing_key(secret: &str, scope: &CredentialScope<'_>) -> [u8; 32] {
    // HMAC keys longer than a block are hashed first, so the key must be
    // built whole rather than fed in pieces. Only runs on a cache miss.
    let mut k = Vec::with_capacity(4 + secret.len());
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret.as_bytes());
    let k_date = hmac_once(&k, scope.date.as_bytes());
    let k_region = hmac_once(&k_date, scope.region.as_bytes());
    let k_service = hmac_once(&k_region, scope.service.as_bytes());
    hmac_once(&k_service, b"aws4_request")
}

fn hmac_once(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_hmac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn new_hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail; the
    // fallback (a MAC under the all-zero key) only keeps this panic-free.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// Where the canonical request goes: a hasher on the hot path, a buffer in
/// tests that compare it with the expected text.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn write_canonical_request(
    out: &mut impl Sink,
    req: &RequestParts<'_>,
    signed_headers: &str,
    presigned: bool,
    payload_hash: &str,
) {
    out.put(req.method.as_bytes());
    out.put(b"\n");
    write_canonical_uri(out, req.path);
    out.put(b"\n");
    write_canonical_query(out, req.query, presigned);
    out.put(b"\n");
    for name in signed_headers.split(';') {
        out.put(name.as_bytes());
        out.put(b":");
        let mut first = true;
        for value in req.headers.get_all(name) {
            if !first {
                out.put(b",");
            }
            first = false;
            write_trimmed(out, value.as_bytes());
        }
        out.put(b"\n");
    }
    out.put(b"\n");
    out.put(signed_headers.as_bytes());
    out.put(b"\n");
    out.put(payload_hash.as_bytes());
}

/// Header value canonicalization as `aws-sigv4` does it: leading and
/// trailing spaces dropped, each run of spaces folded into one. Only the
/// space character; tabs are kept.
fn write_trimmed(out: &mut impl Sink, value: &[u8]) {
    let start = value.iter().position(|&b| b != b' ');
    let end = value.iter().rposition(|&b| b != b' ');
    let (Some(start), Some(end)) = (start, end) else {
        return;
    };
    let Some(value) = value.get(start..=end) else {
        return;
    };
    let mut rest = value;
    while let Some(i) = rest.windows(2).position(|w| w == b"  ") {
        // Write up to and including the first space of the run, then skip the run.
        let (head, tail) = rest.split_at(i + 1);
        out.put(head);
        let skip = tail.iter().position(|&b| b != b' ').unwrap_or(tail.len());
        rest = tail.get(skip..).unwrap_or_default();
    }
    out.put(rest);
}

fn write_canonical_uri(out: &mut impl Sink, path: &str) {
    let path = normalize_path(path);
    // "Double encoding": the path arrives percent-encoded and is encoded once
    // more, so "%2F" becomes "%252F". That is what the SDKs sign for every
    // service but S3.
    for chunk in percent_encoding::utf8_percent_encode(&path, ENCODE_PATH) {
        out.put(chunk.as_bytes());
    }
}

/// Removes `.` and `..` segments and empty segments (`//`), as the AWS
/// signers do before signing. Borrows when there is nothing to do, which is
/// always for `POST /`.
fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let needs_slash = !path.starts_with('/');
    if !needs_slash && !path.contains('.') && !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|s| path.ends_with(s));
    if out.is_empty() || (ends_with_slash && !out.ends_with('/')) {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Splits a raw query into decoded pairs the way the signers read it
/// (`application/x-www-form-urlencoded`: '+' is a space, bad escapes kept
/// literally, invalid UTF-8 replaced).
fn query_pairs(
    query: &str,
) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    query.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k), form_decode(v))
    })
}

fn form_decode(s: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let plus_free: Cow<'_, str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(&plus_free).collect();
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

fn write_canonical_query(out: &mut impl Sink, query: &str, presigned: bool) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, String)> = query_pairs(query)
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| {
            (
                percent_encoding::utf8_percent_encode(&k, ENCODE_QUERY).to_string(),
                percent_encoding::utf8_percent_encode(&v, ENCODE_QUERY).to_string(),
            )
        })
        .collect();
    // Sorted on the encoded key, then the encoded value, by byte.
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.put(b"&");
        }
        out.put(k.as_bytes());
        out.put(b"=");
        out.put(v.as_bytes());
    }
}

fn hex_sha256<'b>(data: &[u8], buf: &'b mut [u8; 64]) -> &'b str {
    hex_digest(Sha256::digest(data).into(), buf)
}

fn hex_digest(digest: [u8; 32], buf: &mut [u8; 64]) -> &str {
    // 32 bytes always fit 64 hex digits, and hex digits are ASCII.
    if hex::encode_to_slice(digest, buf).is_err() {
        return "";
    }
    std::str::from_utf8(buf).unwrap_or("")
}

/// At most `max` characters of `s`, cut on a character boundary: messages
/// echo request parts, and a 1 MB header should not become a 1 MB error.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

#[cfg(test)]
pub(crate) fn canonical_request_for_test(
    req: &RequestParts<'_>,
    signed_headers: &str,
    presigned: bool,
    payload_hash: &str,
) -> String {
    let mut v = Vec::new();
    write_canonical_request(&mut v, req, signed_headers, presigned, payload_hash);
    String::from_utf8_lossy(&v).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Result<Authorization<'_>, AuthError> {
        parse_authorization(s)
    }

    const GOOD: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                        SignedHeaders=content-type;host;x-amz-date, \
                        Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    #[test]
    fn parses_a_good_header() {
        let a = auth(GOOD).unwrap();
        assert_eq!(a.credential.access_key_id, "AKIDEXAMPLE");
        assert_eq!(a.credential.date, "20150830");
        assert_eq!(a.credential.region, "us-east-1");
        assert_eq!(a.credential.service, "iam");
        assert_eq!(a.credential.scope, "20150830/us-east-1/iam/aws4_request");
        assert_eq!(a.signed_headers, "content-type;host;x-amz-date");
        assert_eq!(a.signature.len(), 64);
        // Without spaces after commas, and in another order.
        let b = auth(
            "AWS4-HMAC-SHA256 Signature=ab,SignedHeaders=host,Credential=K/20150830/r/s/aws4_request",
        )
        .unwrap();
        assert_eq!(b.signature, "ab");
        assert_eq!(b.credential.access_key_id, "K");
    }

    #[test]
    fn reports_every_missing_part() {
        let e = auth("AWS4-HMAC-SHA256 foo=bar").unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.aws_code(), "IncompleteSignatureException");
        assert!(msg.contains("requires 'Credential' parameter"), "{msg}");
        assert!(msg.contains("requires 'Signature' parameter"), "{msg}");
        assert!(msg.contains("requires 'SignedHeaders' parameter"), "{msg}");
        assert!(
            msg.ends_with("Authorization=AWS4-HMAC-SHA256 foo=bar"),
            "{msg}"
        );
        let msg = parse_authorization_inner("AWS4-HMAC-SHA256 ", true)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("'X-Amz-Date'"), "{msg}");
        let msg = auth("AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, junk")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("'junk' not a valid key=value pair (missing equal-sign)"),
            "{msg}"
        );
        let msg = auth("AWS4-HMAC-SHA256 Signature=a, Signature=b")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("more than one 'Signature'"), "{msg}");
        let msg = auth("AWS4-HMAC-SHA256 Signature=, SignedHeaders=host, Credential=a/20150830/r/s/aws4_request")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("requires 'Signature'"), "{msg}");
    }

    #[test]
    fn rejects_other_schemes() {
        for h in [
            "",
            "Bearer abc",
            "AWS AKID:sig",
            "AWS4-ECDSA-P256-SHA256 Credential=x",
            "aws4-hmac-sha256 x",
        ] {
            let e = auth(h).unwrap_err();
            assert_eq!(e.aws_code(), "IncompleteSignatureException", "{h}");
        }
    }

    #[test]
    fn credential_scope_errors_name_the_part() {
        let cases = [
            ("AKID/20150830/us-east-1/iam", "exactly 5 slash-delimited"),
            (
                "AKID/20150830/us-east-1/iam/aws4_request/x",
                "exactly 5 slash-delimited",
            ),
            ("AKID", "exactly 5 slash-delimited"),
            ("/20150830/us-east-1/iam/aws4_request", "access key id"),
            ("AKID/2015083/us-east-1/iam/aws4_request", "valid date"),
            ("AKID/20151330/us-east-1/iam/aws4_request", "valid date"),
            ("AKID/20150830//iam/aws4_request", "valid region"),
            ("AKID/20150830/US EAST/iam/aws4_request", "valid region"),
            ("AKID/20150830/us-east-1//aws4_request", "correct service"),
            (
                "AKID/20150830/us-east-1/iam/aws5_request",
                "valid terminator: 'aws4_request', not 'aws5_request'",
            ),
        ];
        for (cred, expect) in cases {
            let e = CredentialScope::parse(cred).unwrap_err();
            assert_eq!(e.aws_code(), "IncompleteSignatureException");
            assert!(e.to_string().contains(expect), "{cred}: {e}");
        }
    }

    #[test]
    fn parse_never_panics_on_odd_input() {
        let samples = [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 ,,,,",
            "AWS4-HMAC-SHA256 =",
            "AWS4-HMAC-SHA256 Credential==/=/=/=/=",
            "AWS4-HMAC-SHA256 Credential=é/é/é/é/é, SignedHeaders=é, Signature=é",
            "AWS4-HMAC-SHA256\tCredential=a/20150830/r/s/aws4_request,\tSignedHeaders=host,\tSignature=00",
            "\u{0}\u{1}\u{ffff}",
        ];
        for s in samples {
            let _ = auth(s);
        }
        // Every prefix and every single-byte corruption of a good header.
        for i in 0..=GOOD.len() {
            if let Some(p) = GOOD.get(..i) {
                let _ = auth(p);
            }
        }
        let long = format!("AWS4-HMAC-SHA256 Credential={}", "é".repeat(100_000));
        let msg = auth(&long).unwrap_err().to_string();
        assert!(msg.len() < 2_000);
    }

    #[test]
    fn normalizes_paths_like_the_signers() {
        for (input, want) in [
            ("", "/"),
            ("/", "/"),
            ("/foo/bar", "/foo/bar"),
            ("/foo//bar", "/foo/bar"),
            ("/foo/./bar", "/foo/bar"),
            ("/foo/../bar", "/bar"),
            ("/../..", "/"),
            ("/foo/bar/.", "/foo/bar/"),
            ("/foo/", "/foo/"),
            ("/a.b/c", "/a.b/c"),
            ("foo", "/foo"),
        ] {
            assert_eq!(normalize_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn canonical_uri_double_encodes() {
        let mut v = Vec::new();
        write_canonical_uri(&mut v, "/a%20b/c%2Fd/~x-y_z.w/é!");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "/a%2520b/c%252Fd/~x-y_z.w/%C3%A9%21"
        );
    }

    #[test]
    fn canonical_query_sorts_and_encodes() {
        let mut v = Vec::new();
        write_canonical_query(
            &mut v,
            "b=2&a=z&a=y&c&d=a+b&e=%7e%20&&X-Amz-Signature=s",
            false,
        );
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "X-Amz-Signature=s&a=y&a=z&b=2&c=&d=a%20b&e=~%20"
        );
        let mut v = Vec::new();
        write_canonical_query(&mut v, "b=2&X-Amz-Signature=s", true);
        assert_eq!(String::from_utf8(v).unwrap(), "b=2");
        // Broken escapes are kept literally, then encoded.
        let mut v = Vec::new();
        write_canonical_query(&mut v, "a=%zz%", false);
        assert_eq!(String::from_utf8(v).unwrap(), "a=%25zz%25");
    }

    #[test]
    fn header_values_are_trimmed_and_folded() {
        for (input, want) in [
            ("a", "a"),
            ("  a  ", "a"),
            ("a   b    c", "a b c"),
            ("  a  b  ", "a b"),
            ("", ""),
            ("     ", ""),
            ("a\tb", "a\tb"),
        ] {
            let mut v = Vec::new();
            write_trimmed(&mut v, input.as_bytes());
            assert_eq!(String::from_utf8(v).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn canonical_request_text() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.append("my-header1", "  value1 ".parse().unwrap());
        headers.append("my-header1", "a   b".parse().unwrap());
        let req = RequestParts {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        let text = canonical_request_for_test(
            &req,
            "host;my-header1;x-amz-date",
            false,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        assert_eq!(
            text,
            "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nmy-header1:value1,a b\n\
             x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// Random requests built from the characters that matter to the
    /// parsers: none may panic, none may verify.
    #[test]
    fn random_requests_never_panic() {
        let creds =
            Credentials::from_principals([Principal::new("t", "AKID", "secret", "123456789012")])
                .unwrap();
        const PIECES: &[&str] = &[
            "AWS4-HMAC-SHA256",
            " ",
            ",",
            "=",
            "/",
            ";",
            "%",
            "%2",
            "%zz",
            "%C3%A9",
            "+",
            "&",
            "?",
            ".",
            "..",
            "//",
            "\t",
            "é",
            "Credential=",
            "SignedHeaders=",
            "Signature=",
            "AKID",
            "20260101",
            "us-east-1",
            "ecs",
            "aws4_request",
            "host",
            "x-amz-date",
            "X-Amz-Credential=",
            "X-Amz-Signature=",
            "X-Amz-Algorithm=",
            "X-Amz-Date=",
            "X-Amz-Expires=",
            "X-Amz-SignedHeaders=",
            "20260101T000000Z",
            "604800",
            "0",
            "ab",
            "00000000000000000000000000000000",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut random = |max_pieces: u64| {
            let n = next() % max_pieces;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            s
        };
        let now = amzdate::to_system_time(1_767_225_600);
        for i in 0..3_000 {
            let mut headers = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&random(12)) {
                if i % 3 != 0 {
                    headers.insert(http::header::AUTHORIZATION, v);
                }
            }
            if let Ok(v) = http::HeaderValue::from_str(&random(3)) {
                headers.insert("x-amz-date", v);
            }
            if i % 5 != 0 {
                headers.insert("host", http::HeaderValue::from_static("h"));
            }
            if let Ok(v) = http::HeaderValue::from_str(&random(2)) {
                headers.insert("x-amz-content-sha256", v);
            }
            let path = random(6);
            let query = random(16);
            let method = random(1);
            let body = random(3);
            let req = RequestParts {
                method: &method,
                path: &path,
                query: &query,
                headers: &headers,
                body: body.as_bytes(),
            };
            assert!(verify(&creds, req, now).is_err());
        }
    }

    #[test]
    fn truncate_is_char_safe() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
