//! Which protocol a request speaks, and which service and operation it is
//! for: decided from what the request carries, before and after
//! authentication.
//!
//! - RPC v2 CBOR: `POST /service/{Service}/operation/{Operation}` with
//!   `smithy-protocol: rpc-v2-cbor`;
//! - AWS JSON: an `X-Amz-Target: Prefix.Operation` header (1.0 or 1.1 by
//!   the content type);
//! - AWS Query: a form body (or query string) with `Action=`; the service is
//!   the SigV4 credential scope's (several Query services share the
//!   `Action` namespace).

use axum::http::{HeaderMap, Method};

use flotilla_protocol::cbor::RpcPath;

use crate::api::{Protocol, ServiceDef};

/// The protocol a request speaks, from its method, path and headers alone
/// (so that even a request that fails authentication is answered in it).
pub fn detect(method: &Method, path: &str, headers: &HeaderMap) -> Protocol {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    if path.starts_with("/service/")
        && (header("smithy-protocol") == "rpc-v2-cbor" || method == Method::POST)
    {
        return Protocol::RpcV2Cbor;
    }
    if headers.contains_key("x-amz-target") {
        return if header("content-type").starts_with("application/x-amz-json-1.0") {
            Protocol::AwsJson1_0
        } else {
            Protocol::AwsJson1_1
        };
    }
    let content_type = header("content-type");
    if content_type.starts_with("application/x-www-form-urlencoded") || method == Method::GET {
        return Protocol::AwsQuery;
    }
    // Nothing says: the most common client of this endpoint speaks JSON 1.1.
    Protocol::AwsJson1_1
}

/// For AWS JSON: `(prefix, Operation)` from `X-Amz-Target`.
pub fn json_target(headers: &HeaderMap) -> Option<(&str, &str)> {
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    target.rsplit_once('.')
}

/// The service a JSON request is for, by its target prefix.
pub fn json_service(
    services: &[&'static ServiceDef],
    protocol: Protocol,
    prefix: &str,
) -> Option<&'static ServiceDef> {
    services
        .iter()
        .copied()
        .find(|s| s.speaks(protocol) && s.schema.target_prefix == Some(prefix))
}

/// The service a CBOR request is for, by its path.
pub fn cbor_service(
    services: &[&'static ServiceDef],
    path: &RpcPath<'_>,
) -> Option<&'static ServiceDef> {
    services
        .iter()
        .copied()
        .find(|s| s.speaks(Protocol::RpcV2Cbor) && path.names(s.schema))
}

/// The service a Query request is for, by the SigV4 credential scope's
/// service: `Action` alone is ambiguous across Query services.
pub fn query_service(
    services: &[&'static ServiceDef],
    signing_name: &str,
) -> Option<&'static ServiceDef> {
    services
        .iter()
        .copied()
        .find(|s| s.speaks(Protocol::AwsQuery) && s.schema.signing_name == signing_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn each_protocol_is_told_by_what_it_carries() {
        let post = Method::POST;
        assert_eq!(
            detect(
                &post,
                "/",
                &headers(&[
                    (
                        "x-amz-target",
                        "AmazonEC2ContainerServiceV20141113.ListClusters"
                    ),
                    ("content-type", "application/x-amz-json-1.1")
                ])
            ),
            Protocol::AwsJson1_1
        );
        assert_eq!(
            detect(
                &post,
                "/",
                &headers(&[
                    ("x-amz-target", "GraniteServiceVersion20100801.ListMetrics"),
                    ("content-type", "application/x-amz-json-1.0")
                ])
            ),
            Protocol::AwsJson1_0
        );
        assert_eq!(
            detect(
                &post,
                "/",
                &headers(&[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8"
                )])
            ),
            Protocol::AwsQuery
        );
        assert_eq!(
            detect(
                &post,
                "/service/GraniteServiceVersion20100801/operation/ListMetrics",
                &headers(&[("smithy-protocol", "rpc-v2-cbor")])
            ),
            Protocol::RpcV2Cbor
        );
    }
}
