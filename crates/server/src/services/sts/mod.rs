//! AWS STS: `GetCallerIdentity`, which deployment tools call to check their
//! credentials. It answers for the principal that signed the request.

use flotilla_model::wire::sts;

use crate::api::{Call, Env, Reply, ServiceDef};
use crate::error::ApiResult;

/// AWS STS: the Query protocol, signed as `sts`.
pub static SERVICE: ServiceDef = ServiceDef {
    schema: &sts::SERVICE,
    dispatch: |env, call| Box::pin(dispatch(env, call)),
    max_body: 64 * 1024,
    body_too_large: "ValidationError",
};

async fn dispatch(_env: &Env, call: Call<'_>) -> ApiResult<Reply> {
    match sts::Operation::from_name(call.name()) {
        Some(sts::Operation::GetCallerIdentity) => {
            let _: sts::GetCallerIdentityRequest = call.decode()?;
            let ctx = &call.ctx;
            // An IAM user's `UserId` is its unique id; the access key id is
            // the stable, unique id a Flotilla principal has.
            call.reply(&sts::GetCallerIdentityResponse {
                user_id: Some(ctx.access_key_id.clone()),
                account: Some(ctx.scope.account.clone()),
                arn: Some(ctx.principal_arn.clone()),
            })
        }
        _ => Err(call.unsupported("STS")),
    }
}
