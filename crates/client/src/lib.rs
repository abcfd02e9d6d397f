//! A small client for the AWS JSON 1.1 APIs Flotilla serves, signed with the
//! official SigV4 signer (`aws-sigv4`). The agent and `flotilla sim` talk to
//! the control plane through it, and tests use it to send requests an SDK
//! would refuse to build (wrong types, unknown operations, bad signatures).
//!
//! A client speaks to one service: ECS by default ([`Client::ecs`]);
//! [`Client::for_service`] gives the same credentials for another JSON
//! service (its signing name and `X-Amz-Target` prefix, e.g. CloudWatch
//! Logs: `logs`, [`LOGS_TARGET_PREFIX`]), and [`Client::with_endpoint`] /
//! [`Client::with_region`] point it elsewhere.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use std::time::Duration;

use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The ECS `X-Amz-Target` prefix.
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// CloudWatch Logs' `X-Amz-Target` prefix (signing name `logs`).
pub const LOGS_TARGET_PREFIX: &str = "Logs_20140328";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an AWS error. `code` is the bare error
    /// name (`ResourceNotFoundException`); `body` is the whole error
    /// document, for errors that carry more than a message (e.g.
    /// CloudWatch Logs' `expectedSequenceToken`).
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        body: serde_json::Value,
    },
    #[error("transport: {0}")]
    Transport(String),
    #[error("signing: {0}")]
    Signing(String),
    #[error("decoding the response: {0}")]
    Decode(#[from] serde_json::Error),
}

impl ClientError {
    /// The AWS error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A raw answer: status, `X-Amzn-ErrorType` header if any, body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub error_type: Option<String>,
    pub request_id: Option<String>,
    /// Every header of the answer (protocol tests read `content-type`,
    /// `smithy-protocol`, `x-amzn-query-error`).
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The bare error name from an AWS JSON error's `__type` or
/// `X-Amzn-ErrorType`, which may carry a namespace
/// (`com.amazonaws.logs#ResourceNotFoundException`) or a suffix
/// (`ResourceNotFoundException:http://…`).
pub fn error_code(raw: &str) -> &str {
    let name = raw.rsplit('#').next().unwrap_or(raw);
    name.split(':').next().unwrap_or(name)
}

/// Signs and sends AWS JSON 1.1 requests to one endpoint.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    region: String,
    /// SigV4 signing name (`ecs`, `logs`, …).
    service: String,
    /// `X-Amz-Target` prefix of the service's operations.
    target_prefix: String,
    credentials: Credentials,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for ECS at `endpoint` (`http://host:port`).
    pub fn ecs(
        endpoint: &str,
        access_key_id: &str,
        secret_access_key: &str,
        region: &str,
    ) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            service: "ecs".to_string(),
            target_prefix: ECS_TARGET_PREFIX.to_string(),
            credentials: Credentials::new(access_key_id, secret_access_key, None, None, "flotilla"),
            http: HyperClient::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The same credentials, endpoint and region for another AWS JSON 1.1
    /// service: `signing_name` for SigV4's credential scope, and the
    /// `X-Amz-Target` prefix its operations carry.
    pub fn for_service(&self, signing_name: &str, target_prefix: &str) -> Client {
        Client {
            service: signing_name.to_string(),
            target_prefix: target_prefix.to_string(),
            ..self.clone()
        }
    }

    /// The same client signing for `region`.
    pub fn with_region(&self, region: &str) -> Client {
        Client {
            region: region.to_string(),
            ..self.clone()
        }
    }

    /// The same client sending to `endpoint` (`http://host:port`).
    pub fn with_endpoint(&self, endpoint: &str) -> Client {
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// Calls operation `op` of this client's service with a typed request
    /// and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        req: &Req,
    ) -> Result<Resp, ClientError> {
        let body = serde_json::to_vec(req)?;
        let raw = self
            .raw(&format!("{}.{op}", self.target_prefix), body)
            .await?;
        if raw.status != 200 {
            let v = raw.json();
            let code = raw
                .error_type
                .as_deref()
                .or_else(|| v.get("__type").and_then(|t| t.as_str()))
                .map(|c| error_code(c).to_string())
                .unwrap_or_else(|| "Unknown".into());
            // Services spell it `message` or `Message`.
            let message = v
                .get("message")
                .or_else(|| v.get("Message"))
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            return Err(ClientError::Api {
                status: raw.status,
                code,
                message,
                body: v,
            });
        }
        Ok(serde_json::from_slice(&raw.body)?)
    }

    /// Sends `body` with `X-Amz-Target: target`, signed, and returns the raw answer.
    pub async fn raw(&self, target: &str, body: Vec<u8>) -> Result<RawResponse, ClientError> {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(body)
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        self.sign(&mut req, SystemTime::now())?;
        self.send(req).await
    }

    /// Signs a request in place, as an SDK would, at time `at`.
    pub fn sign(
        &self,
        req: &mut http::Request<Vec<u8>>,
        at: SystemTime,
    ) -> Result<(), ClientError> {
        if !req.headers().contains_key("host") {
            let authority = req
                .uri()
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let value = http::HeaderValue::from_str(&authority)
                .map_err(|e| ClientError::Signing(e.to_string()))?;
            req.headers_mut().insert("host", value);
        }
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            &uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(req.body()),
        )
        .map_err(|e| ClientError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    /// A presigned GET URL for `path_and_query` on this endpoint (e.g. the agent
    /// gateway's WebSocket upgrade), valid for `expires`. The signature rides
    /// in the query, so headers added later (the WebSocket handshake's) do not
    /// disturb it.
    pub fn presign_get(
        &self,
        path_and_query: &str,
        expires: Duration,
    ) -> Result<String, ClientError> {
        let url = format!("{}{}", self.endpoint, path_and_query);
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::Signing(e.to_string()))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let identity = self.credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "GET",
            &url,
            [("host", host.as_str())].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| ClientError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into_parts();
        let mut req = http::Request::builder()
            .method("GET")
            .uri(&url)
            .body(())
            .map_err(|e| ClientError::Signing(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut req);
        Ok(req.uri().to_string())
    }

    /// Sends a request as it is (signed or not).
    pub async fn send(&self, req: http::Request<Vec<u8>>) -> Result<RawResponse, ClientError> {
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let error_type = header("x-amzn-errortype");
        let request_id = header("x-amzn-requestid");
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        Ok(RawResponse {
            status,
            error_type,
            request_id,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_lose_namespace_and_suffix() {
        assert_eq!(
            error_code("ResourceNotFoundException"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            error_code("com.amazonaws.logs#DataAlreadyAcceptedException"),
            "DataAlreadyAcceptedException"
        );
        assert_eq!(
            error_code("InvalidSequenceTokenException:http://internal.amazon.com/"),
            "InvalidSequenceTokenException"
        );
    }

    #[test]
    fn a_client_for_another_service_keeps_credentials_and_signs_for_it() {
        let ecs = Client::ecs("http://127.0.0.1:9/", "AKID", "secret", "us-east-1");
        let logs = ecs
            .for_service("logs", LOGS_TARGET_PREFIX)
            .with_region("eu-west-1")
            .with_endpoint("http://127.0.0.2:9");
        assert_eq!(
            (logs.endpoint(), logs.region()),
            ("http://127.0.0.2:9", "eu-west-1")
        );
        let mut req = http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.2:9/")
            .body(b"{}".to_vec())
            .unwrap();
        logs.sign(
            &mut req,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.contains("Credential=AKID/20231114/eu-west-1/logs/aws4_request"),
            "{auth}"
        );
        assert_eq!(
            ecs.endpoint(),
            "http://127.0.0.1:9",
            "the original is unchanged"
        );
    }
}
