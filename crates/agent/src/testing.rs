//! Helpers for tests that run real containers: the `flotilla-test` image and
//! clean-up by label. Used by this crate's tests and by the end-to-end
//! tests of the whole system.
//!
//! The machine the tests run on has a Docker Engine but no images and no
//! registry, so the image is built here: `testimage/` (a std-only Rust
//! program, see its `src/main.rs` for the modes) is compiled statically
//! with the host's gnu toolchain and put into an image `FROM scratch` via
//! the Engine's build API with an in-memory tar context.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use bollard::query_parameters::{BuildImageOptions, ListContainersOptions, RemoveContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::Mutex;

/// The image tag the test helpers produce. Its entrypoint is `/testprog`,
/// so a container's `command` is the mode: `["sleep"]`, `["exit", "3"]`, …
pub const TEST_IMAGE: &str = "flotilla-test:latest";
/// Path of the program inside the image (for health-check commands).
pub const TEST_PROGRAM: &str = "/testprog";

/// A label every test container carries so a test can remove its own.
pub const TEST_LABEL: &str = "com.flotilla.test";

#[derive(Debug, thiserror::Error)]
pub enum TestImageError {
    #[error("building testimage/ failed: {0}")]
    Build(String),
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Tags built (or found up to date) by this process.
static BUILD: Mutex<Vec<String>> = Mutex::const_new(Vec::new());

fn testimage_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testimage")
}

/// Compiles the static test program and returns its path. `FLOTILLA_TESTPROG`
/// may point at a prebuilt static binary instead.
pub fn build_test_program() -> Result<PathBuf, TestImageError> {
    if let Ok(p) = std::env::var("FLOTILLA_TESTPROG") {
        return Ok(PathBuf::from(p));
    }
    let dir = testimage_dir();
    let target_dir = dir.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let triple = "x86_64-unknown-linux-gnu";
    let out = Command::new(cargo)
        .current_dir(&dir)
        .args(["build", "--release", "--quiet", "--target", triple])
        .env("CARGO_TARGET_DIR", &target_dir)
        // The outer cargo's flags are for the project, not for this binary.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .output()?;
    if !out.status.success() {
        return Err(TestImageError::Build(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(target_dir.join(triple).join("release").join("testprog"))
}

/// Makes sure [`TEST_IMAGE`] exists and holds the current test program;
/// builds it when missing or stale. Safe to call from many tests at once.
pub async fn ensure_test_image(docker: &Docker) -> Result<(), TestImageError> {
    ensure_test_image_as(docker, TEST_IMAGE).await
}

/// [`ensure_test_image`] under another tag: a benchmark that needs a mode
/// of the current program uses its own tag, so that another checkout's
/// tests retagging `flotilla-test:latest` with an older program meanwhile
/// cannot take the mode away from it.
pub async fn ensure_test_image_as(docker: &Docker, tag: &str) -> Result<(), TestImageError> {
    let mut built = BUILD.lock().await;
    if built.iter().any(|t| t == tag) {
        return Ok(());
    }
    let (bytes, fingerprint) = program_and_fingerprint().await?;
    build_image(docker, tag, &bytes, &fingerprint).await?;
    built.push(tag.to_string());
    Ok(())
}

/// Like [`ensure_test_image`], but returns a tag that names this test
/// program only, `flotilla-test:FINGERPRINT`. Several checkouts of the
/// project share one Docker Engine: when one of them rebuilds
/// [`TEST_IMAGE`] from its own (older or newer) program, a task started
/// later from `flotilla-test:latest` runs that program instead. A test
/// that needs a mode or endpoint the others may not have names its image
/// by this tag.
pub async fn ensure_pinned_test_image(docker: &Docker) -> Result<String, TestImageError> {
    let (bytes, fingerprint) = program_and_fingerprint().await?;
    let tag = format!("flotilla-test:{fingerprint}");
    build_image(docker, &tag, &bytes, &fingerprint).await?;
    Ok(tag)
}

/// The compiled test program and its fingerprint (FNV-1a and length).
async fn program_and_fingerprint() -> Result<(Vec<u8>, String), TestImageError> {
    let program = tokio::task::spawn_blocking(build_test_program)
        .await
        .map_err(|e| TestImageError::Build(e.to_string()))??;
    let bytes = std::fs::read(&program)?;
    let fingerprint = format!("{:016x}-{}", fnv1a(&bytes), bytes.len());
    Ok((bytes, fingerprint))
}

/// Builds the image `tag` holding `bytes` as the test program, unless it
/// already holds the program of this `fingerprint`.
async fn build_image(
    docker: &Docker,
    tag: &str,
    bytes: &[u8],
    fingerprint: &str,
) -> Result<(), TestImageError> {
    // Label the image with the program's fingerprint, so an image built from
    // an older program is rebuilt and an up-to-date one is reused.
    if let Ok(img) = docker.inspect_image(tag).await {
        let current = img
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get("com.flotilla.testprog").cloned());
        if current.as_deref() == Some(fingerprint) {
            return Ok(());
        }
    }
    let dockerfile = format!(
        "FROM scratch\nCOPY testprog {TEST_PROGRAM}\nLABEL com.flotilla.testprog={fingerprint}\nENTRYPOINT [\"{TEST_PROGRAM}\"]\nCMD [\"sleep\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
    };
    add("Dockerfile", dockerfile.as_bytes(), 0o644)?;
    add("testprog", bytes, 0o755)?;
    let context = tar.into_inner()?;
    let options = BuildImageOptions {
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut build = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = build.next().await {
        let info = item?;
        if let Some(err) = info.error {
            return Err(TestImageError::Build(err));
        }
    }
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Removes (forcibly) every container carrying `key=value`.
pub async fn remove_labelled(docker: &Docker, key: &str, value: &str) {
    let filters = HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    if let Ok(list) = docker.list_containers(Some(options)).await {
        for c in list {
            if let Some(id) = c.id {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            link: false,
                        }),
                    )
                    .await;
            }
        }
    }
}

/// Removes the containers labelled `key=value` when created and when
/// dropped (even when the test panics).
pub struct ContainerGuard {
    key: String,
    value: String,
}

impl ContainerGuard {
    pub async fn new(docker: &Docker, key: &str, value: &str) -> ContainerGuard {
        remove_labelled(docker, key, value).await;
        ContainerGuard {
            key: key.to_string(),
            value: value.to_string(),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let (key, value) = (self.key.clone(), self.value.clone());
        // Drop cannot be async: clean up on a thread with its own runtime
        // (and its own client: a client is tied to the runtime that made
        // it), and wait for it so the next test starts clean.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(docker) = Docker::connect_with_local_defaults() {
                    if let Ok(docker) = docker.negotiate_version().await {
                        remove_labelled(&docker, &key, &value).await;
                    }
                }
            });
        });
        let _ = handle.join();
    }
}
