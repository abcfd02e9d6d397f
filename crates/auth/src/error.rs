//! Why a request was not authenticated, in the words AWS uses.

use http::StatusCode;

/// A request failed authentication. `Display` is the message AWS sends for
/// the same failure; [`AuthError::aws_code`] is the `__type` /
/// `X-Amzn-ErrorType` code and [`AuthError::http_status`] the status.
///
/// The messages may echo parts of the request (never a secret) because that
/// is what makes a signing bug debuggable from the client side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor presigned query parameters.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,

    /// The access key id in the credential scope is not in the credentials
    /// file.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient {
        /// The key id the client sent, for the server's logs.
        access_key_id: String,
    },

    /// The signature is well formed but is not the one we computed: wrong
    /// secret, or the request was changed after signing, or the client
    /// canonicalized differently.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service documentation \
         for details."
    )]
    SignatureDoesNotMatch,

    /// `x-amz-content-sha256` names a hash that is not the body's.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,

    /// The request was signed more than the allowed skew before `now`.
    #[error("Signature expired: {signed_at} is now earlier than {earliest} ({now} - {skew_minutes} min.)")]
    SignatureExpired {
        signed_at: String,
        earliest: String,
        now: String,
        skew_minutes: u64,
    },

    /// The request was signed more than the allowed skew after `now`.
    #[error("Signature not yet current: {signed_at} is still later than {latest} ({now} + {skew_minutes} min.)")]
    SignatureNotYetCurrent {
        signed_at: String,
        latest: String,
        now: String,
        skew_minutes: u64,
    },

    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`.
    #[error(
        "Signature expired: the presigned request was valid until {valid_until} \
         ({signed_at} + {expires_secs} sec.) and it is now {now}."
    )]
    PresignedUrlExpired {
        signed_at: String,
        expires_secs: u64,
        valid_until: String,
        now: String,
    },

    /// The credential scope is well formed but names a service this
    /// endpoint does not serve (see [`crate::Verified::expect_service`]).
    #[error("{0}")]
    ScopeMismatch(String),

    /// The signature information is malformed or incomplete; the message
    /// says which part.
    #[error("{0}")]
    IncompleteSignature(String),
}

impl AuthError {
    /// The AWS error code (`__type`) for the JSON protocols (ECS, Application
    /// Auto Scaling, CloudWatch Logs).
    pub fn aws_code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::UnrecognizedClient { .. } => "UnrecognizedClientException",
            AuthError::SignatureDoesNotMatch
            | AuthError::ContentSha256Mismatch
            | AuthError::SignatureExpired { .. }
            | AuthError::SignatureNotYetCurrent { .. }
            | AuthError::PresignedUrlExpired { .. }
            | AuthError::ScopeMismatch(_) => "InvalidSignatureException",
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
        }
    }

    /// The HTTP status. AWS JSON-protocol services (ECS, DynamoDB, …) answer
    /// every authentication failure with 400, not 403: SDK error reports
    /// from real ECS and DynamoDB show `InvalidSignatureException`,
    /// `UnrecognizedClientException` and `MissingAuthenticationTokenException`
    /// all with status 400. SDKs key off the code, not the status, but a
    /// faithful status keeps their retry classification identical.
    pub fn http_status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// Whether the failure is about the clock (skew or an expired presigned
    /// URL), which a client may fix by correcting its time; SDKs do so from
    /// the response's `Date` header, so the API front should always send one.
    pub fn is_clock_error(&self) -> bool {
        matches!(
            self,
            AuthError::SignatureExpired { .. }
                | AuthError::SignatureNotYetCurrent { .. }
                | AuthError::PresignedUrlExpired { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_messages_match_aws_wording() {
        let e = AuthError::SignatureExpired {
            signed_at: "20260101T000000Z".into(),
            earliest: "20260101T001500Z".into(),
            now: "20260101T003000Z".into(),
            skew_minutes: 15,
        };
        assert_eq!(
            e.to_string(),
            "Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z \
             (20260101T003000Z - 15 min.)"
        );
        assert_eq!(e.aws_code(), "InvalidSignatureException");
        let e = AuthError::SignatureNotYetCurrent {
            signed_at: "20260101T010000Z".into(),
            latest: "20260101T004500Z".into(),
            now: "20260101T003000Z".into(),
            skew_minutes: 15,
        };
        assert_eq!(
            e.to_string(),
            "Signature not yet current: 20260101T010000Z is still later than 20260101T004500Z \
             (20260101T003000Z + 15 min.)"
        );
    }

    #[test]
    fn codes() {
        assert_eq!(
            AuthError::MissingAuthenticationToken.aws_code(),
            "MissingAuthenticationTokenException"
        );
        assert_eq!(
            AuthError::MissingAuthenticationToken.to_string(),
            "Missing Authentication Token"
        );
        let e = AuthError::UnrecognizedClient {
            access_key_id: "AKIDX".into(),
        };
        assert_eq!(e.aws_code(), "UnrecognizedClientException");
        assert_eq!(
            e.to_string(),
            "The security token included in the request is invalid."
        );
        assert_eq!(
            AuthError::SignatureDoesNotMatch.aws_code(),
            "InvalidSignatureException"
        );
        assert!(AuthError::SignatureDoesNotMatch
            .to_string()
            .starts_with("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."));
        assert_eq!(
            AuthError::IncompleteSignature("x".into()).aws_code(),
            "IncompleteSignatureException"
        );
        assert_eq!(
            AuthError::SignatureDoesNotMatch.http_status(),
            StatusCode::BAD_REQUEST
        );
    }
}
