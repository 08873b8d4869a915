//! Two operator processes share a Lease: only one leads; when it stops (SIGTERM) it
//! releases the lease and the other takes over at once.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::harness::{client, namespace, wait_for};

struct Operator(Child);

impl Operator {
    fn start(identity: &str, port: u16, ns: &str) -> Self {
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{identity}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_modelhub-operator"))
            .args([
                &format!("--metrics-addr=127.0.0.1:{port}"),
                "--lease-name=e2e-leader",
                &format!("--lease-namespace={ns}"),
                &format!("--identity={identity}"),
                // Watch only the empty test namespace: these operators must not compete
                // with the suite's operator for real resources.
                &format!("--namespace={ns}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start operator");
        Self(child)
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        // SIGTERM through the kill command keeps this test free of unsafe FFI.
        let ok = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "cannot signal the operator");
        // A clean stop takes well under the 10 s grace period; give it 30 s before
        // declaring the process stuck (and never hang the suite).
        for _ in 0..300 {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        panic!("operator did not exit within 30 s of SIGTERM");
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("e2e-leader")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn one_leader_at_a_time_and_fast_handover_on_sigterm() {
    let client = client().await;
    let ns = namespace(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client, &ns);

    let mut first = Operator::start("op-a", 18181, &ns);
    wait_for("op-a to lead", || async {
        (holder(&leases).await.as_deref() == Some("op-a")).then_some(())
    })
    .await;
    let mut second = Operator::start("op-b", 18182, &ns);
    // Several renew periods pass and the lease stays with op-a.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some("op-a"));
    let metrics = |port: u16| async move {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(metrics(18181).await.contains("modelhub_operator_leader 1"));
    assert!(metrics(18182).await.contains("modelhub_operator_leader 0"));

    // Graceful stop releases the lease: right after op-a exits the lease is free or
    // already op-b's, never left to expire in op-a's name.
    let status = first.terminate();
    assert!(status.success(), "op-a exited with {status}");
    let after_exit = holder(&leases).await;
    assert!(
        after_exit.is_none() || after_exit.as_deref() == Some("op-b"),
        "lease still held by {after_exit:?}"
    );
    wait_for("op-b to lead", || async {
        (holder(&leases).await.as_deref() == Some("op-b")).then_some(())
    })
    .await;
    let taken = leases.get("e2e-leader").await.unwrap().spec.unwrap();
    assert!(taken.lease_transitions.unwrap_or(0) >= 1);
    assert!(second.terminate().success());
}
