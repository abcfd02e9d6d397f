//! PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting,
//! ListAccountSettings.
//!
//! Settings are kept per principal: the account default belongs to the
//! account's root (`arn:aws:iam::ACCOUNT:root`). The effective value of a
//! setting for a principal is its own, else the account default, else AWS's.

use flotilla_model::ecs::{self, SettingName};

use super::{decode_token, page, page_size, Ctx};
use crate::core::state::{Key, State};
use crate::error::{ApiError, ApiResult};

/// AWS's value when nobody has set one.
fn aws_default(name: SettingName) -> &'static str {
    match name {
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat => "enabled",
        SettingName::AwsvpcTrunking
        | SettingName::ContainerInsights
        | SettingName::FargateFIPSMode => "disabled",
        SettingName::FargateEventWindows => "disabled",
        SettingName::TagResourceAuthorization => "on",
        SettingName::GuardDutyActivate => "off",
        SettingName::FargateTaskRetirementWaitPeriod => "7",
        SettingName::DefaultLogDriverMode => "non-blocking",
    }
}

fn allowed_values(name: SettingName) -> &'static [&'static str] {
    match name {
        SettingName::ContainerInsights => &["enabled", "disabled", "enhanced"],
        SettingName::TagResourceAuthorization | SettingName::GuardDutyActivate => &["on", "off"],
        SettingName::FargateTaskRetirementWaitPeriod => &["0", "7", "14"],
        SettingName::DefaultLogDriverMode => &["blocking", "non-blocking"],
        _ => &["enabled", "disabled"],
    }
}

fn check_value(name: SettingName, value: &str) -> ApiResult<()> {
    let allowed = allowed_values(name);
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Setting {name} cannot be '{value}': it must be one of {}.",
            allowed.join(", ")
        )))
    }
}

fn root_arn(ctx: &Ctx) -> String {
    format!("arn:aws:iam::{}:root", ctx.scope.account)
}

fn key(name: SettingName, principal: &str) -> String {
    format!("{name}/{principal}")
}

async fn put(
    state: &State,
    ctx: &Ctx,
    name: SettingName,
    value: String,
    principal: String,
) -> ApiResult<ecs::Setting> {
    check_value(name, &value)?;
    let setting = ecs::Setting {
        name: Some(name),
        value: Some(value),
        principal_arn: Some(principal.clone()),
        r#type: Some(ecs::SettingType::User),
    };
    state
        .write(&ctx.scope, |acct, tx| {
            let k = key(name, &principal);
            tx.put(Key::Setting(&k), &setting);
            acct.settings.insert(k, setting.clone());
            Ok(setting)
        })
        .await
}

pub async fn put_account_setting(
    state: &State,
    ctx: &Ctx,
    req: ecs::PutAccountSettingRequest,
) -> ApiResult<ecs::PutAccountSettingResponse> {
    let (Some(name), Some(value)) = (req.name, req.value) else {
        return Err(ApiError::invalid("name and value are required."));
    };
    let principal = req
        .principal_arn
        .unwrap_or_else(|| ctx.principal_arn.clone());
    let setting = put(state, ctx, name, value, principal).await?;
    Ok(ecs::PutAccountSettingResponse {
        setting: Some(setting),
    })
}

pub async fn put_account_setting_default(
    state: &State,
    ctx: &Ctx,
    req: ecs::PutAccountSettingDefaultRequest,
) -> ApiResult<ecs::PutAccountSettingDefaultResponse> {
    let (Some(name), Some(value)) = (req.name, req.value) else {
        return Err(ApiError::invalid("name and value are required."));
    };
    let setting = put(state, ctx, name, value, root_arn(ctx)).await?;
    Ok(ecs::PutAccountSettingDefaultResponse {
        setting: Some(setting),
    })
}

pub async fn delete_account_setting(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeleteAccountSettingRequest,
) -> ApiResult<ecs::DeleteAccountSettingResponse> {
    let Some(name) = req.name else {
        return Err(ApiError::invalid("name is required."));
    };
    let principal = req
        .principal_arn
        .unwrap_or_else(|| ctx.principal_arn.clone());
    state
        .write(&ctx.scope, |acct, tx| {
            let k = key(name, &principal);
            let removed = acct.settings.remove(&k);
            if removed.is_some() {
                tx.delete(Key::Setting(&k));
            }
            let setting = removed.unwrap_or(ecs::Setting {
                name: Some(name),
                value: Some(aws_default(name).to_string()),
                principal_arn: Some(principal.clone()),
                r#type: Some(ecs::SettingType::User),
            });
            Ok(ecs::DeleteAccountSettingResponse {
                setting: Some(setting),
            })
        })
        .await
}

pub async fn list_account_settings(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListAccountSettingsRequest,
) -> ApiResult<ecs::ListAccountSettingsResponse> {
    let size = page_size(req.max_results, 10)?;
    let after = decode_token(req.next_token.as_deref())?;
    let principal = req
        .principal_arn
        .clone()
        .unwrap_or_else(|| ctx.principal_arn.clone());
    let root = root_arn(ctx);
    let effective = req.effective_settings.unwrap_or(false);
    let settings: Vec<ecs::Setting> = state.read(&ctx.scope, |acct| {
        SettingName::ALL
            .iter()
            .copied()
            .filter(|n| req.name.is_none_or(|want| want == *n))
            .filter_map(|n| {
                let own = acct.settings.get(&key(n, &principal)).cloned();
                if !effective {
                    return own;
                }
                own.or_else(|| acct.settings.get(&key(n, &root)).cloned())
                    .or_else(|| {
                        Some(ecs::Setting {
                            name: Some(n),
                            value: Some(aws_default(n).to_string()),
                            principal_arn: Some(root.clone()),
                            r#type: Some(ecs::SettingType::AwsManaged),
                        })
                    })
            })
            .filter(|s| {
                req.value
                    .as_ref()
                    .is_none_or(|v| s.value.as_ref() == Some(v))
            })
            .collect()
    });
    // Pages resume after a setting name, so list them in name order.
    let mut settings = settings;
    settings.sort_by_key(|s| s.name.map(|n| n.as_str()));
    let items = settings
        .into_iter()
        .map(|s| (s.name.map(|n| n.as_str()).unwrap_or_default(), s))
        .filter(|(k, _)| after.as_deref().is_none_or(|a| *k > a));
    let (settings, next) = page(items, size);
    Ok(ecs::ListAccountSettingsResponse {
        settings: Some(settings),
        next_token: next,
    })
}
