//! AWS STS: `GetCallerIdentity`, which deployment tools call to check their
//! credentials. It answers for the principal that signed the request.

use crate::api::{self, Call, Env, Protocol, Reply, ServiceDef};
use crate::error::{ApiError, ApiResult};

/// AWS STS: the Query protocol, signed as `sts`.
pub static SERVICE: ServiceDef = ServiceDef {
    name: "sts",
    signing_names: &["sts"],
    protocols: &[Protocol::AwsQuery],
    target_prefix: None,
    query: Some(api::QueryInfo {
        version: "2011-06-15",
        xml_namespace: "https://sts.amazonaws.com/doc/2011-06-15/",
    }),
    cbor_service: None,
    dispatch: |env, call| Box::pin(dispatch(env, call)),
    error_info: api::default_error_info,
    max_body: 64 * 1024,
    body_too_large: "InvalidParameterValue",
    has_operation: |name| name == "GetCallerIdentity",
};

async fn dispatch(_env: &Env, call: Call<'_>) -> ApiResult<Reply> {
    match call.operation {
        "GetCallerIdentity" => {
            let ctx = &call.ctx;
            // The user id of an IAM user is its unique id; Flotilla's
            // principals have their access key id as the closest stable one.
            let out = serde_json::json!({
                "UserId": ctx.access_key_id,
                "Account": ctx.scope.account,
                "Arn": ctx.principal_arn,
            });
            call.reply(&out)
        }
        other => Err(ApiError::new(
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15."),
        )),
    }
}
