//! The ECS API: one handler per operation, each a function from a typed
//! request to a typed response. Handlers never see HTTP: the front decodes
//! the body into the operation's request type (generated from the service
//! model) and [`dispatch`] runs the handler. Domain logic shared with the
//! gateway and the controllers lives in `crate::core`.

use base64::Engine;
use flotilla_model::arn::{self, Scope};
use flotilla_model::ecs::{self, Operation};

use crate::api::{self, Call, Env, Reply, ServiceDef};
use crate::core::state::{Account, ClusterState};
use crate::error::{ApiError, ApiResult};

mod clusters;
mod instances;
mod protection;
mod service_deployments;
mod services;
mod settings;
mod tags;
mod task_definitions;
mod task_sets;
mod tasks;

pub use api::Ctx;
pub use tags::validate_tags;

/// Amazon ECS: AWS JSON 1.1, signed as `ecs`.
pub static SERVICE: ServiceDef = ServiceDef {
    schema: &ecs::SERVICE,
    dispatch: |env, call| Box::pin(dispatch(env, call)),
    // ECS's largest requests (a RegisterTaskDefinition with many
    // containers) are far below 1 MiB.
    max_body: 1024 * 1024,
    body_too_large: "ClientException",
};

/// Runs one ECS operation.
async fn dispatch(env: &Env, call: Call<'_>) -> ApiResult<Reply> {
    let Some(op) = Operation::from_name(call.name()) else {
        return Err(call.unsupported("ECS"));
    };
    let state = &*env.state;
    let ctx = &call.ctx;
    macro_rules! ops {
        ($($name:ident => $handler:path),* $(,)?) => {
            match op {
                $(Operation::$name => call.reply(&$handler(state, ctx, call.decode()?).await?),)*
                _ => Err(call.unsupported("ECS")),
            }
        };
    }
    ops! {
        CreateCluster => clusters::create_cluster,
        DescribeClusters => clusters::describe_clusters,
        ListClusters => clusters::list_clusters,
        UpdateCluster => clusters::update_cluster,
        UpdateClusterSettings => clusters::update_cluster_settings,
        DeleteCluster => clusters::delete_cluster,
        RegisterTaskDefinition => task_definitions::register,
        DescribeTaskDefinition => task_definitions::describe,
        ListTaskDefinitions => task_definitions::list,
        ListTaskDefinitionFamilies => task_definitions::list_families,
        DeregisterTaskDefinition => task_definitions::deregister,
        DeleteTaskDefinitions => task_definitions::delete,
        RegisterContainerInstance => instances::register,
        DeregisterContainerInstance => instances::deregister,
        DescribeContainerInstances => instances::describe,
        ListContainerInstances => instances::list,
        UpdateContainerInstancesState => instances::update_state,
        PutAttributes => instances::put_attributes,
        DeleteAttributes => instances::delete_attributes,
        ListAttributes => instances::list_attributes,
        DiscoverPollEndpoint => instances::discover_poll_endpoint,
        RunTask => tasks::run_task,
        StartTask => tasks::start_task,
        StopTask => tasks::stop_task,
        DescribeTasks => tasks::describe_tasks,
        ListTasks => tasks::list_tasks,
        SubmitTaskStateChange => tasks::submit_task_state_change,
        SubmitContainerStateChange => tasks::submit_container_state_change,
        CreateService => services::create_service,
        UpdateService => services::update_service,
        DescribeServices => services::describe_services,
        ListServices => services::list_services,
        DeleteService => services::delete_service,
        CreateTaskSet => task_sets::create_task_set,
        DescribeTaskSets => task_sets::describe_task_sets,
        UpdateTaskSet => task_sets::update_task_set,
        DeleteTaskSet => task_sets::delete_task_set,
        UpdateServicePrimaryTaskSet => task_sets::update_service_primary_task_set,
        ListServiceDeployments => service_deployments::list_service_deployments,
        DescribeServiceDeployments => service_deployments::describe_service_deployments,
        DescribeServiceRevisions => service_deployments::describe_service_revisions,
        StopServiceDeployment => service_deployments::stop_service_deployment,
        ContinueServiceDeployment => service_deployments::continue_service_deployment,
        TagResource => tags::tag_resource,
        UntagResource => tags::untag_resource,
        ListTagsForResource => tags::list_tags_for_resource,
        PutAccountSetting => settings::put_account_setting,
        PutAccountSettingDefault => settings::put_account_setting_default,
        DeleteAccountSetting => settings::delete_account_setting,
        ListAccountSettings => settings::list_account_settings,
        UpdateTaskProtection => protection::update_task_protection,
        GetTaskProtection => protection::get_task_protection,
    }
}

/// The cluster a request names (a name or an ARN; absent means `default`).
/// An ARN of another account or region names no cluster of the caller's.
pub fn cluster_name<'a>(scope: &Scope, reference: Option<&'a str>) -> ApiResult<&'a str> {
    let reference = reference.unwrap_or("default");
    if arn::Arn::parse(reference)
        .is_some_and(|a| a.account != scope.account || a.region != scope.region)
    {
        return Err(ApiError::cluster_not_found());
    }
    arn::name_from_ref(reference, "cluster")
        .ok_or_else(|| ApiError::invalid(format!("Invalid cluster identifier: {reference}")))
}

/// The ACTIVE cluster a request names, or `ClusterNotFoundException`.
pub fn active_cluster<'a>(
    acct: &'a Account,
    scope: &Scope,
    reference: Option<&str>,
) -> ApiResult<&'a ClusterState> {
    let name = cluster_name(scope, reference)?;
    acct.clusters
        .get(name)
        .filter(|c| c.is_active())
        .ok_or_else(ApiError::cluster_not_found)
}

pub fn active_cluster_mut<'a>(
    acct: &'a mut Account,
    scope: &Scope,
    reference: Option<&str>,
) -> ApiResult<&'a mut ClusterState> {
    let name = cluster_name(scope, reference)?;
    acct.clusters
        .get_mut(name)
        .filter(|c| c.is_active())
        .ok_or_else(ApiError::cluster_not_found)
}

/// Page size for a List call: `maxResults` within 1..=100, or `default`.
pub fn page_size(max_results: Option<i32>, default: usize) -> ApiResult<usize> {
    match max_results {
        None => Ok(default),
        Some(n) if (1..=100).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!(
            "maxResults must be between 1 and 100; got {n}."
        ))),
    }
}

/// Pagination tokens are opaque to clients: the sort key of the last item
/// returned, base64-encoded. A page resumes strictly after it.
pub fn encode_token(last_key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last_key)
}

pub fn decode_token(token: Option<&str>) -> ApiResult<Option<String>> {
    let Some(token) = token else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid("Invalid nextToken: it must be a token returned by a previous call.")
        })
}

/// One page of `items` (already in key order and after the token), and the
/// token for the next page if more remain.
pub fn page<K: AsRef<str>, T>(
    mut items: impl Iterator<Item = (K, T)>,
    size: usize,
) -> (Vec<T>, Option<String>) {
    let mut out = Vec::with_capacity(size.min(100));
    let mut last = None;
    for (k, v) in items.by_ref() {
        if out.len() == size {
            // There is at least one more item: the page ends at `last`.
            return (out, last.map(|k: K| encode_token(k.as_ref())));
        }
        out.push(v);
        last = Some(k);
    }
    (out, None)
}

/// A name of 1–255 letters, digits, hyphens and underscores.
pub fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn check_name(what: &str, name: &str) -> ApiResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} '{name}' is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
        )))
    }
}

/// A `Failure` entry for a Describe call.
pub fn failure(arn: impl Into<String>, reason: &str) -> ecs::Failure {
    ecs::Failure {
        arn: Some(arn.into()),
        reason: Some(reason.to_string()),
        detail: None,
    }
}
