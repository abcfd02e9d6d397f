//! Reading a container's json-file log from the file itself
//! (`flotilla_agent::jsonfile`, what `DockerRuntime::logs` does when it
//! can), against the real Docker Engine: the records are the very ones
//! Docker's logs API gives (same outputs, timestamps and bytes, also from a
//! second in the middle, as after an agent restart), rotations are
//! followed while the container writes, and a container that exits is read
//! to its last line.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotilla_agent::runtime::{ContainerSpec, LogRecord, OutputStream, RunState};
use flotilla_agent::spec::LABEL_INSTANCE;
use flotilla_agent::testing::{ensure_test_image, ContainerGuard, TEST_IMAGE};
use flotilla_agent::{ContainerRuntime, DockerRuntime};
use futures_util::stream::{BoxStream, StreamExt};

/// Reads a stream to its end (bounded in time).
async fn read_all(
    mut s: BoxStream<'static, flotilla_agent::runtime::RuntimeResult<LogRecord>>,
) -> Vec<LogRecord> {
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.next()).await {
            Ok(Some(Ok(r))) => all.push(r),
            Ok(Some(Err(e))) => panic!("reading the log: {e}"),
            Ok(None) => return all,
            Err(_) => panic!("the log did not end within 60 s ({} records)", all.len()),
        }
    }
}

fn texts(records: &[LogRecord], stream: OutputStream) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.stream == stream)
        .map(|r| String::from_utf8_lossy(&r.bytes).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_reader_follows_rotations_and_gives_what_the_api_gives() {
    const N: usize = 600;
    let docker = DockerRuntime::connect().await.expect("docker");
    ensure_test_image(docker.client())
        .await
        .expect("test image");
    let instance = format!("logs-file-{}", std::process::id());
    let _guard = ContainerGuard::new(docker.client(), LABEL_INSTANCE, &instance).await;
    // About 80 bytes a line in the file: a rotation every 100 or so lines of
    // the 1,200, with room for all of them in the files kept.
    let spec = ContainerSpec {
        name: format!("flotilla-logs-file-{}", std::process::id()),
        image: TEST_IMAGE.into(),
        cmd: Some(vec!["lines".into(), N.to_string(), "3".into()]),
        labels: BTreeMap::from([(LABEL_INSTANCE.to_string(), instance.clone())]),
        network_mode: "none".into(),
        log_driver: Some("json-file".into()),
        log_options: BTreeMap::from([
            ("max-size".to_string(), "8k".to_string()),
            ("max-file".to_string(), "40".to_string()),
        ]),
        ..Default::default()
    };
    let id = docker.create(&spec).await.expect("create");
    docker.start(&id).await.expect("start");
    // Followed from the start while it writes and Docker rotates.
    let followed = read_all(
        docker
            .logs_from_file(&id, 0)
            .await
            .expect("the json-file log is readable here (root, local engine)"),
    )
    .await;
    let info = docker.inspect(&id).await.unwrap();
    assert_ne!(
        info.state,
        RunState::Running,
        "read to the end once it stopped"
    );
    let want = |p: &str| (1..=N).map(|i| format!("{p} {i}\n")).collect::<Vec<_>>();
    assert_eq!(texts(&followed, OutputStream::Stdout), want("out"));
    assert_eq!(texts(&followed, OutputStream::Stderr), want("err"));
    assert_eq!(followed.len(), 2 * N);
    // Docker rotated the file while it was followed.
    let r = docker
        .client()
        .inspect_container(
            &id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let path = r.log_path.unwrap();
    assert!(
        std::path::Path::new(&format!("{path}.3")).exists(),
        "the log was rotated at least 3 times"
    );
    // The same records as the API's, from the start and from a second in
    // the middle (where a restarted agent resumes).
    let api = read_all(docker.logs_from_api(&id, 0)).await;
    assert_eq!(followed, api);
    // The first whole second after the first record: the lines span about
    // 1.8 s, so some fall before it and some after. (The second of the
    // middle record, floored, could fall before every record.)
    let middle = followed[0].timestamp / 1_000_000_000 + 1;
    let from_file = read_all(docker.logs_from_file(&id, middle).await.unwrap()).await;
    let from_api = read_all(docker.logs_from_api(&id, middle)).await;
    assert!(!from_file.is_empty() && from_file.len() < followed.len());
    assert_eq!(from_file, from_api);
    assert!(from_file
        .iter()
        .all(|r| r.timestamp >= middle * 1_000_000_000));
}
