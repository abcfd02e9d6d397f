//! Fuzzing Flotilla's network input paths. No input from the network may
//! panic the server.
//!
//! Input format for both targets: the first byte picks the operation from
//! `flotilla_model::ecs::Operation::ALL` (modulo its length), the rest is the
//! request body.
//!
//! - [`decode_one`]: the body through `flotilla_server::api::decode_json_input` into the
//!   operation's request type (JSON decoding plus the model's shape rules);
//!   for RegisterTaskDefinition on through the task definition rules and the
//!   builder; and the same bytes as an `Authorization` header
//!   (`flotilla_auth::parse_authorization`), a credential scope, a
//!   pagination token and a Cluster Query Language expression.
//! - [`dispatch_one`]: the body through `flotilla_server::api::call_json` (ECS), the
//!   whole handler, over an in-memory state seeded with a cluster, a
//!   container instance and a task definition, so valid-looking requests
//!   reach deep into the handlers.
//!
//! - [`protocol_one`]: the AWS protocol codecs of `flotilla-protocol` (Query
//!   forms, RPC v2 CBOR bodies) for any served operation of any service,
//!   with their round trip checked; its input names the operation on a first
//!   line (see `src/protocol.rs`).
//!
//! Run (nightly + cargo-fuzz):
//! ```text
//! cd fuzz && cargo +nightly fuzz run decode -- -max_total_time=300
//! cd fuzz && cargo +nightly fuzz run dispatch -- -max_total_time=300
//! cd fuzz && cargo +nightly fuzz run protocol -- -max_total_time=300
//! ```
//! Without nightly: `cargo run --release --bin replay -- [SECONDS]` feeds the
//! seed corpus and random mutations of it through the same two functions.

use std::sync::{Arc, OnceLock};

mod protocol;
pub use protocol::protocol_one;

use flotilla_model::ecs::{self, Operation};
use flotilla_server::api::{call_json, decode_json_input as decode, Ctx, Env};
use flotilla_server::services::ecs::SERVICE as ECS;

/// The operation an input names, and its body.
pub fn split(data: &[u8]) -> Option<(Operation, &[u8])> {
    let (&first, body) = data.split_first()?;
    Some((Operation::ALL[first as usize % Operation::ALL.len()], body))
}

macro_rules! decode_ops {
    ($op:expr, $body:expr, $($name:ident),* $(,)?) => {
        match $op {
            $(Operation::$name => { let _ = decode::<paste_req!($name)>($body); })*
            _ => {}
        }
    };
}

macro_rules! paste_req {
    (CreateCluster) => {
        ecs::CreateClusterRequest
    };
    (DescribeClusters) => {
        ecs::DescribeClustersRequest
    };
    (ListClusters) => {
        ecs::ListClustersRequest
    };
    (UpdateCluster) => {
        ecs::UpdateClusterRequest
    };
    (UpdateClusterSettings) => {
        ecs::UpdateClusterSettingsRequest
    };
    (DeleteCluster) => {
        ecs::DeleteClusterRequest
    };
    (DescribeTaskDefinition) => {
        ecs::DescribeTaskDefinitionRequest
    };
    (ListTaskDefinitions) => {
        ecs::ListTaskDefinitionsRequest
    };
    (ListTaskDefinitionFamilies) => {
        ecs::ListTaskDefinitionFamiliesRequest
    };
    (DeregisterTaskDefinition) => {
        ecs::DeregisterTaskDefinitionRequest
    };
    (DeleteTaskDefinitions) => {
        ecs::DeleteTaskDefinitionsRequest
    };
    (RegisterContainerInstance) => {
        ecs::RegisterContainerInstanceRequest
    };
    (DeregisterContainerInstance) => {
        ecs::DeregisterContainerInstanceRequest
    };
    (DescribeContainerInstances) => {
        ecs::DescribeContainerInstancesRequest
    };
    (ListContainerInstances) => {
        ecs::ListContainerInstancesRequest
    };
    (UpdateContainerInstancesState) => {
        ecs::UpdateContainerInstancesStateRequest
    };
    (PutAttributes) => {
        ecs::PutAttributesRequest
    };
    (DeleteAttributes) => {
        ecs::DeleteAttributesRequest
    };
    (ListAttributes) => {
        ecs::ListAttributesRequest
    };
    (DiscoverPollEndpoint) => {
        ecs::DiscoverPollEndpointRequest
    };
    (RunTask) => {
        ecs::RunTaskRequest
    };
    (StartTask) => {
        ecs::StartTaskRequest
    };
    (StopTask) => {
        ecs::StopTaskRequest
    };
    (DescribeTasks) => {
        ecs::DescribeTasksRequest
    };
    (ListTasks) => {
        ecs::ListTasksRequest
    };
    (SubmitTaskStateChange) => {
        ecs::SubmitTaskStateChangeRequest
    };
    (SubmitContainerStateChange) => {
        ecs::SubmitContainerStateChangeRequest
    };
    (CreateService) => {
        ecs::CreateServiceRequest
    };
    (UpdateService) => {
        ecs::UpdateServiceRequest
    };
    (DescribeServices) => {
        ecs::DescribeServicesRequest
    };
    (ListServices) => {
        ecs::ListServicesRequest
    };
    (DeleteService) => {
        ecs::DeleteServiceRequest
    };
    (TagResource) => {
        ecs::TagResourceRequest
    };
    (UntagResource) => {
        ecs::UntagResourceRequest
    };
    (ListTagsForResource) => {
        ecs::ListTagsForResourceRequest
    };
    (PutAccountSetting) => {
        ecs::PutAccountSettingRequest
    };
    (PutAccountSettingDefault) => {
        ecs::PutAccountSettingDefaultRequest
    };
    (DeleteAccountSetting) => {
        ecs::DeleteAccountSettingRequest
    };
    (ListAccountSettings) => {
        ecs::ListAccountSettingsRequest
    };
}

/// Decoding and validation, without state.
pub fn decode_one(data: &[u8]) {
    let Some((op, body)) = split(data) else {
        return;
    };
    if op == Operation::RegisterTaskDefinition {
        if let Ok(req) = decode::<ecs::RegisterTaskDefinitionRequest>(body) {
            use flotilla_model::task_definition as td;
            if td::validate_register(&req).is_ok() {
                let family = req.family.clone().unwrap_or_default();
                let built = td::build_task_definition(
                    &req,
                    format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:1"),
                    1,
                    1.0,
                    None,
                );
                let _ = serde_json::to_vec(&built);
            }
            let _ = td::requires_attributes(&req);
            let _ = td::compatibilities(&req);
        }
    } else {
        decode_ops!(
            op,
            body,
            CreateCluster,
            DescribeClusters,
            ListClusters,
            UpdateCluster,
            UpdateClusterSettings,
            DeleteCluster,
            DescribeTaskDefinition,
            ListTaskDefinitions,
            ListTaskDefinitionFamilies,
            DeregisterTaskDefinition,
            DeleteTaskDefinitions,
            RegisterContainerInstance,
            DeregisterContainerInstance,
            DescribeContainerInstances,
            ListContainerInstances,
            UpdateContainerInstancesState,
            PutAttributes,
            DeleteAttributes,
            ListAttributes,
            DiscoverPollEndpoint,
            RunTask,
            StartTask,
            StopTask,
            DescribeTasks,
            ListTasks,
            SubmitTaskStateChange,
            SubmitContainerStateChange,
            CreateService,
            UpdateService,
            DescribeServices,
            ListServices,
            DeleteService,
            TagResource,
            UntagResource,
            ListTagsForResource,
            PutAccountSetting,
            PutAccountSettingDefault,
            DeleteAccountSetting,
            ListAccountSettings,
        );
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = flotilla_auth::parse_authorization(text);
        let _ = flotilla_auth::CredentialScope::parse(text);
        let _ = flotilla_server::services::ecs::decode_token(Some(text));
        let _ = flotilla_scheduler::Expression::parse(text);
        let _ = flotilla_model::task_definition::parse_task_cpu(text);
        let _ = flotilla_model::task_definition::parse_task_memory(text);
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    state: std::sync::Mutex<(Arc<Env>, u32)>,
}

const ACCOUNT: &str = "123456789012";

fn ctx() -> Ctx {
    Ctx {
        scope: flotilla_model::arn::Scope::new(ACCOUNT, "us-east-1"),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:user/fuzz"),
        principal_name: "fuzz".into(),
        access_key_id: "AKIAFUZZ000000000001".into(),
        now: 1_767_225_600.0,
        endpoint: "http://127.0.0.1:1".into(),
        request_id: "fuzz".into(),
    }
}

/// A fresh state holding cluster `default` and `prod`, a container instance
/// in `prod` and task definition `web:1`.
fn seeded(runtime: &tokio::runtime::Runtime) -> Arc<Env> {
    // The log and metric stores want files: a directory kept for the run.
    let dir = std::env::temp_dir().join(format!(
        "flotilla-fuzz-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("fuzz data dir");
    let memory = Arc::new(flotilla_store::memory::MemoryStore::new());
    let stores = flotilla_server::Stores::with_state(&dir, memory).expect("stores");
    let env = flotilla_server::open_env(stores).expect("open state");
    let seed: &[(Operation, &str)] = &[
        (Operation::CreateCluster, r#"{}"#),
        (
            Operation::CreateCluster,
            r#"{"clusterName":"prod","tags":[{"key":"k","value":"v"}]}"#,
        ),
        (
            Operation::RegisterTaskDefinition,
            r#"{"family":"web","containerDefinitions":[{"name":"app","image":"i","memory":64,"portMappings":[{"containerPort":80,"hostPort":8080}]}]}"#,
        ),
        (
            Operation::RegisterContainerInstance,
            r#"{"cluster":"prod","instanceIdentityDocument":"{\"instanceId\":\"i-0123\"}","totalResources":[{"name":"CPU","type":"INTEGER","integerValue":4096},{"name":"MEMORY","type":"INTEGER","integerValue":4096}]}"#,
        ),
    ];
    runtime.block_on(async {
        for (op, body) in seed {
            call_json(&env, &ECS, op.name(), ctx(), body.as_bytes())
                .await
                .expect("seed");
        }
    });
    env
}

/// A fresh suffix per seeded state (a state is reseeded now and then).
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = seeded(&runtime);
        Fixture {
            runtime,
            state: std::sync::Mutex::new((state, 0)),
        }
    })
}

/// One whole operation over a seeded in-memory state. Errors are fine;
/// panics and 500s for bad input are not.
pub fn dispatch_one(data: &[u8]) {
    let Some((op, body)) = split(data) else {
        return;
    };
    let f = fixture();
    let state = {
        let mut guard = f.state.lock().unwrap_or_else(|e| e.into_inner());
        // Start over now and then so the state (and memory) stays small.
        guard.1 += 1;
        if guard.1 % 5000 == 0 {
            guard.0 = seeded(&f.runtime);
        }
        guard.0.clone()
    };
    let result = f
        .runtime
        .block_on(call_json(&state, &ECS, op.name(), ctx(), body));
    if let Err(e) = result {
        // A ServerException is our fault: bad input must be a client error.
        assert_ne!(
            e.code,
            "ServerException",
            "{op:?} answered 500 to {:?}: {}",
            String::from_utf8_lossy(body),
            e.message
        );
    }
}
