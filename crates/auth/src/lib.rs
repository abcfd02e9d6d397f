//! Who is calling: the credentials file and server-side AWS Signature
//! Version 4 verification.
//!
//! This crate owns
//! - the credentials file (a TOML list of principals: name, access key id,
//!   secret, account id) and the dev-mode file the server creates when it is
//!   started without `--credentials` ([`credentials`]);
//! - checking that a request was signed with SigV4 by one of those
//!   principals, either in the `Authorization` header or as a presigned URL
//!   ([`sigv4`]), and saying why not in AWS's words ([`AuthError`]).
//!
//! It knows nothing about the server framework: the API front hands over the
//! method, raw path and query, headers and body ([`RequestParts`]) and the
//! current time, and gets back a [`Verified`] caller (principal, region,
//! service) or an [`AuthError`] with its AWS code, HTTP status and message.
//! No clock, no I/O on the request path; file I/O only in
//! [`Credentials::load`] and [`Credentials::generate_dev`].
//!
//! Where to start reading: [`verify`] in `sigv4.rs`, whose module comment
//! shows the canonical request; then `tests/official_signer.rs`, which signs
//! requests with the official `aws-sigv4` crate and verifies them here.
//!
//! ```no_run
//! # fn demo(headers: &http::HeaderMap, body: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use flotilla_auth::{Credentials, RequestParts};
//! let creds = Credentials::load("/etc/flotilla/credentials.toml")?;
//! let req = RequestParts { method: "POST", path: "/", query: "", headers, body };
//! match creds.verify(req, std::time::SystemTime::now()) {
//!     Ok(caller) => println!("{} in {}", caller.principal.account_id, caller.region),
//!     Err(e) => println!("{} {}: {}", e.http_status(), e.aws_code(), e),
//! }
//! # Ok(()) }
//! ```

mod amzdate;
pub mod credentials;
mod error;
pub mod sigv4;

pub use credentials::{
    Credentials, CredentialsError, Principal, DEV_ACCOUNT_ID, DEV_CREDENTIALS_FILE,
};
pub use error::AuthError;
pub use sigv4::{
    parse_authorization, verify, Authorization, CredentialScope, RequestParts, Verified,
};
