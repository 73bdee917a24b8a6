//! A client in another language proves the contract: Python with grpcio,
//! its stubs generated from the same .proto at test time, appends, reads
//! and subscribes against a running server.
//!
//! The packages go into a virtual environment under the target directory,
//! made once and reused. Without python3 or PyPI the test reports itself
//! skipped, except under CI=true, where that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use factum_core::{EventStore, InMemoryEventStore, StreamId, Tenancy};
use factum_server::{Server, Tokens};
use futures::TryStreamExt;

/// The virtual environment with grpcio and grpcio-tools, made when missing;
/// `None` (skipped) when it cannot be made.
fn python_with_grpc() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-grpc-venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import grpc, grpc_tools"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if ready(&python) {
        return Some(python);
    }
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).output();
    match made {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let reason = String::from_utf8_lossy(&output.stderr).into_owned();
            return factum_core::testing::service_unavailable("python3 -m venv", reason);
        }
        Err(error) => return factum_core::testing::service_unavailable("python3", error),
    }
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "grpcio",
            "grpcio-tools",
        ])
        .output();
    match installed {
        Ok(output) if output.status.success() && ready(&python) => Some(python),
        Ok(output) => {
            let reason = String::from_utf8_lossy(&output.stderr).into_owned();
            factum_core::testing::service_unavailable("pip install grpcio grpcio-tools (PyPI)", reason)
        }
        Err(error) => factum_core::testing::service_unavailable("pip", error),
    }
}

/// Python stubs generated from the crate's .proto into `out`.
fn generate_stubs(python: &Path, out: &Path) {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../factum-remote/proto");
    let output = Command::new(python)
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_dir.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg("factum/v1/eventstore.proto")
        .output()
        .expect("grpc_tools.protoc runs");
    assert!(
        output.status.success(),
        "protoc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_appends_reads_and_subscribes() {
    let Some(python) = tokio::task::spawn_blocking(python_with_grpc)
        .await
        .expect("the setup task")
    else {
        return;
    };
    let stubs = tempfile::tempdir().expect("a directory for the stubs");
    generate_stubs(&python, stubs.path());

    let store = InMemoryEventStore::new();
    let tokens = "[[token]]\ntoken = \"acme-writer\"\ntenant = \"acme\"\naccess = \"read-write\"\n";
    let tokens = Tokens::from_toml(tokens).expect("the tokens parse");
    let server = common::start(Server::new(store.clone()).tokens(tokens)).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(script)
        .arg(stubs.path())
        .arg(server.local_addr().to_string())
        .arg("acme-writer");
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the Python client finishes within two minutes")
        .expect("the Python client runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python client failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON summary");
    assert_eq!(seen["appended_version"], 3);
    assert_eq!(seen["read"], serde_json::json!([1, 2, 3]));
    assert_eq!(seen["log_positions"], serde_json::json!([1, 2, 3]));
    assert_eq!(seen["tenant"], "acme");
    assert_eq!(seen["conflict"], "ABORTED");
    assert_eq!(seen["bad_payload"], "INVALID_ARGUMENT");
    assert_eq!(seen["no_token"], "UNAUTHENTICATED");
    assert_eq!(seen["subscribed"], serde_json::json!([1, 2, 3, 4]));

    // What Python wrote is in acme's stream, as a Rust client reads it.
    let acme = store.for_tenant("acme").expect("a tenant view");
    let events: Vec<_> = acme
        .read_stream(&StreamId::new("Counter", "py-1"), 1)
        .try_collect()
        .await
        .expect("the stream reads");
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].payload.to_value().expect("JSON")["amount"], 4);
    assert_eq!(
        events[0].metadata.user.get("client"),
        Some(&serde_json::json!("python"))
    );
    assert_eq!(
        store
            .stream_version(&StreamId::new("Counter", "py-1"))
            .await
            .expect("a version"),
        0
    );
    server.shutdown().await.expect("a clean shutdown");
}
