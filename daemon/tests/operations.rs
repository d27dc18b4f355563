//! Operations over real daemons: scoped tokens over TCP, drain and admin shutdown, the
//! plaintext health listener, and `mehr fleet status` across a five-node devnet with one node
//! killed.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{TestDaemon, bin};
use nix::sys::signal::Signal;
use serde_json::Value;

/// `mehr` against `daemon`'s TCP endpoint with the token in `token_file`.
fn tcp_cli(
    daemon: &TestDaemon,
    token_file: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    Command::new(bin("mehr"))
        .arg("--endpoint")
        .arg(format!("http://{}", daemon.api))
        .arg("--token-file")
        .arg(token_file)
        .args(args)
        .env_remove("MEHR_TOKEN")
        .env_remove("MEHR_DATA_DIR")
        .output()
        .unwrap()
}

#[test]
fn scoped_tokens_reach_only_their_methods_and_revocation_is_immediate() {
    let daemon = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let readonly = dir.path().join("readonly.token");
    let minted = daemon.cli(&[
        "--json",
        "token",
        "create",
        "--scope",
        "readonly",
        "--label",
        "monitor",
        "--out",
        readonly.to_str().unwrap(),
    ]);
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let record: Value = serde_json::from_slice(&minted.stdout).unwrap();
    let id = record["id"].as_str().unwrap().to_string();

    let balance = tcp_cli(&daemon, &readonly, &["--json", "balance"]);
    assert!(
        balance.status.success(),
        "{}",
        String::from_utf8_lossy(&balance.stderr)
    );

    // A pay method with a readonly token: PERMISSION_DENIED, reason SCOPE_DENIED.
    let pay = tcp_cli(
        &daemon,
        &readonly,
        &["channel", "pay", "00112233445566778899aabbccddeeff", "1"],
    );
    assert!(!pay.status.success());
    let said = String::from_utf8_lossy(&pay.stderr);
    assert!(
        said.contains("pay scope") || said.contains("SCOPE_DENIED"),
        "{said}"
    );

    // The admin token over TCP still works, and lists the minted token (no secret).
    let admin_file = daemon.data_dir.join("api.token");
    let listed = tcp_cli(&daemon, &admin_file, &["--json", "token", "list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["scopes"][0], "readonly");
    assert!(list[0].get("secret").is_none());
    let stored = std::fs::read_to_string(daemon.data_dir.join("api-tokens.json")).unwrap();
    let secret = std::fs::read_to_string(&readonly).unwrap();
    assert!(!stored.contains(&secret));

    let revoked = daemon.cli(&["token", "revoke", &id]);
    assert!(revoked.status.success());
    let refused = tcp_cli(&daemon, &readonly, &["balance"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid bearer token"));
}

#[test]
fn drain_refuses_new_work_and_admin_shutdown_stops_the_node_cleanly() {
    let mut daemon = TestDaemon::start();
    let drained = daemon.cli(&["--json", "drain"]);
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    let invoke = daemon.cli(&["invoke", "nothing"]);
    assert!(!invoke.status.success());
    assert!(String::from_utf8_lossy(&invoke.stderr).contains("drained"));
    // Reads still work; readiness is NOT_SERVING while liveness stays SERVING.
    assert!(daemon.cli(&["info"]).status.success());
    let config = daemon.cli(&["config", "show"]);
    assert!(String::from_utf8_lossy(&config.stdout).contains("request_timeout_secs"));
    let shutdown = daemon.cli(&["shutdown", "--reason", "test"]);
    assert!(shutdown.status.success());
    let exit = daemon
        .stop_with(Signal::SIGCONT, Duration::from_secs(15))
        .expect("the node exits after an admin shutdown");
    assert!(exit.success(), "{exit}");
    assert!(daemon.stderr().contains("admin request: test"));
}

#[test]
fn fleet_status_marks_a_killed_node_unreachable_within_the_timeout() {
    let mut nodes: Vec<TestDaemon> = (0..5).map(|_| TestDaemon::start()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut inventory = String::from("timeout_secs = 3\n");
    for (index, node) in nodes.iter().enumerate() {
        inventory.push_str(&format!(
            "[[node]]\nname = \"n{index}\"\nendpoint = \"http://{}\"\ntoken_file = \"{}\"\n",
            node.api,
            node.data_dir.join("api.token").display()
        ));
    }
    let inventory_path = dir.path().join("fleet.toml");
    std::fs::write(&inventory_path, inventory).unwrap();
    nodes[2].stop_with(Signal::SIGKILL, Duration::from_secs(5));

    let started = Instant::now();
    let run = |json: bool| {
        let mut command = Command::new(bin("mehr"));
        command.arg("fleet").arg("--inventory").arg(&inventory_path);
        if json {
            command.arg("--json");
        }
        command
            .arg("status")
            .env_remove("MEHR_TOKEN")
            .output()
            .unwrap()
    };
    let table = run(false);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8_lossy(&table.stdout);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert_eq!(
        rows.iter().filter(|r| r.contains("UNREACHABLE")).count(),
        1,
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("n2") && r.contains("UNREACHABLE")),
        "{text}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.contains(env!("CARGO_PKG_VERSION")))
            .count(),
        4
    );

    let json = run(true);
    let list: Value = serde_json::from_slice(&json.stdout).unwrap();
    let reachable: Vec<bool> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["reachable"].as_bool().unwrap())
        .collect();
    assert_eq!(reachable, vec![true, true, false, true, true]);
    assert!(
        list[0]["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["service"] == "readiness" && s["serving"] == true)
    );

    // exec runs a subcommand on every node and merges the JSON by name.
    let exec = Command::new(bin("mehr"))
        .args([
            "fleet",
            "--inventory",
            inventory_path.to_str().unwrap(),
            "--json",
            "exec",
            "info",
        ])
        .env_remove("MEHR_TOKEN")
        .output()
        .unwrap();
    assert!(
        !exec.status.success(),
        "one node is down, so exec reports a failure"
    );
    let merged: Value = serde_json::from_slice(&exec.stdout).unwrap();
    assert_eq!(merged["n0"]["ok"], true);
    assert_eq!(merged["n0"]["output"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(merged["n2"]["ok"], false);
}

/// `api.health_listen`: `grpc.health.v1` alone, in plaintext and without a token, as the
/// kubelet's `grpc:` probes call it; readiness follows a drain while liveness does not.
#[test]
fn the_plaintext_health_listener_serves_health_alone_and_follows_a_drain() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let port = common::free_port();
    let daemon =
        TestDaemon::start_with_config(&format!("[api]\nhealth_listen = \"127.0.0.1:{port}\"\n"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = HealthClient::new(channel.clone());
        let status = |service: &str| {
            let mut health = health.clone();
            let service = service.to_string();
            async move {
                health
                    .check(HealthCheckRequest { service })
                    .await
                    .map(|r| r.into_inner().status())
            }
        };
        assert_eq!(status("").await.unwrap(), ServingStatus::Serving);
        assert_eq!(status("readiness").await.unwrap(), ServingStatus::Serving);
        assert_eq!(
            status("mehr.v1.NodeService").await.unwrap(),
            ServingStatus::Serving
        );
        let unknown = status("no.such.Service").await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown}");

        // Nothing but health here: the node's own API is not reachable without its token.
        let mut node = mehr_sdk::proto::node_service_client::NodeServiceClient::new(channel);
        let refused = node
            .get_info(mehr_sdk::proto::GetInfoRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused}");

        assert!(daemon.cli(&["drain"]).status.success());
        common::eventually("readiness NOT_SERVING", Duration::from_secs(10), || async {
            (status("readiness").await.ok()? == ServingStatus::NotServing).then_some(())
        })
        .await;
        assert_eq!(status("").await.unwrap(), ServingStatus::Serving);
        assert!(daemon.cli(&["drain", "--resume"]).status.success());
        common::eventually("ready again", Duration::from_secs(10), || async {
            (status("readiness").await.ok()? == ServingStatus::Serving).then_some(())
        })
        .await;
    });
}
