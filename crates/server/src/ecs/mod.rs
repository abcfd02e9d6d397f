//! The ECS API: one handler per operation, each a function from a typed
//! request to a typed response. Handlers never see HTTP; [`dispatch`] decodes
//! the body into the operation's request type (generated from the service
//! model), checks the model's rules, calls the handler and encodes the answer.

use base64::Engine;
use flotilla_model::arn::{self, Scope};
use flotilla_model::ecs::{self, Operation};
use flotilla_model::Shape;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::state::{Account, ClusterState, State};

mod clusters;
pub mod resources;
pub mod instances;
mod settings;
mod tags;
pub mod task_definitions;
pub mod tasks;
pub mod services;

pub use tags::validate_tags;

/// Who is calling, in which account and region, and when.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub scope: Scope,
    /// `arn:aws:iam::ACCOUNT:user/NAME`: what `registeredBy`/`createdBy` show.
    pub principal_arn: String,
    /// Seconds since the epoch.
    pub now: f64,
    /// The base URL clients reached us at (what DiscoverPollEndpoint answers).
    pub endpoint: String,
}

/// Decodes, checks, runs and encodes one ECS operation.
pub async fn dispatch(state: &State, ctx: &Ctx, op: Operation, body: &[u8]) -> ApiResult<Vec<u8>> {
    macro_rules! ops {
        ($($name:ident => $handler:path),* $(,)?) => {
            match op {
                $(Operation::$name => encode(&$handler(state, ctx, decode(body)?).await?),)*
                other => Err(ApiError::new(
                    "UnknownOperationException",
                    format!("Operation {} is not supported by Flotilla.", other.name()),
                )),
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
        TagResource => tags::tag_resource,
        UntagResource => tags::untag_resource,
        ListTagsForResource => tags::list_tags_for_resource,
        PutAccountSetting => settings::put_account_setting,
        PutAccountSettingDefault => settings::put_account_setting_default,
        DeleteAccountSetting => settings::delete_account_setting,
        ListAccountSettings => settings::list_account_settings,
    }
}

/// Decodes a JSON body into `T` and checks the model's rules. Malformed JSON
/// and wrong types are `SerializationException` naming the field; rule
/// violations are `InvalidParameterException`.
pub fn decode<T: DeserializeOwned + Shape>(body: &[u8]) -> ApiResult<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    // Exactly one JSON object: serde would also take an array for a struct.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new("SerializationException", "Could not read the request body: it must be a JSON object."));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." {
            format!("Could not read the request body: {inner}")
        } else {
            format!("Could not read {path}: {inner}")
        };
        ApiError::new("SerializationException", message)
    })?;
    de.end().map_err(|e| ApiError::new("SerializationException", format!("Could not read the request body: unexpected data after the JSON object ({e})")))?;
    value.validate()?;
    Ok(value)
}

fn encode<T: Serialize>(value: &T) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ApiError::server(format!("encoding the response: {e}")))
}

/// The cluster a request names (a name or an ARN; absent means `default`).
/// An ARN of another account or region names no cluster of the caller's.
pub fn cluster_name<'a>(scope: &Scope, reference: Option<&'a str>) -> ApiResult<&'a str> {
    let reference = reference.unwrap_or("default");
    if arn::Arn::parse(reference).is_some_and(|a| a.account != scope.account || a.region != scope.region) {
        return Err(ApiError::cluster_not_found());
    }
    arn::name_from_ref(reference, "cluster").ok_or_else(|| ApiError::invalid(format!("Invalid cluster identifier: {reference}")))
}

/// The ACTIVE cluster a request names, or `ClusterNotFoundException`.
pub fn active_cluster<'a>(acct: &'a Account, scope: &Scope, reference: Option<&str>) -> ApiResult<&'a ClusterState> {
    let name = cluster_name(scope, reference)?;
    acct.clusters.get(name).filter(|c| c.is_active()).ok_or_else(ApiError::cluster_not_found)
}

pub fn active_cluster_mut<'a>(acct: &'a mut Account, scope: &Scope, reference: Option<&str>) -> ApiResult<&'a mut ClusterState> {
    let name = cluster_name(scope, reference)?;
    acct.clusters.get_mut(name).filter(|c| c.is_active()).ok_or_else(ApiError::cluster_not_found)
}

/// Page size for a List call: `maxResults` within 1..=100, or `default`.
pub fn page_size(max_results: Option<i32>, default: usize) -> ApiResult<usize> {
    match max_results {
        None => Ok(default),
        Some(n) if (1..=100).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!("maxResults must be between 1 and 100; got {n}."))),
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
        .ok_or_else(|| ApiError::invalid("Invalid nextToken: it must be a token returned by a previous call."))
}

/// One page of `items` (already in key order and after the token), and the
/// token for the next page if more remain.
pub fn page<K: AsRef<str>, T>(mut items: impl Iterator<Item = (K, T)>, size: usize) -> (Vec<T>, Option<String>) {
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
    (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
    ecs::Failure { arn: Some(arn.into()), reason: Some(reason.to_string()), detail: None }
}
