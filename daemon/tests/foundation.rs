//! The foundation, end to end, with real daemon processes: start, health, GetInfo through the
//! SDK and the CLI, identity persistence, token checks, reflection, TLS off loopback, graceful
//! shutdown, data-dir locking and a damaged key file.

mod common;

use std::{process::Command, time::Duration};

use common::{TestDaemon, bin, free_port};
use futures::StreamExt;
use mehr_sdk::{Client, ConnectOptions, proto as pb};
use nix::sys::signal::Signal;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn tcp_client(daemon: &TestDaemon, token: Option<&str>) -> Result<Client, mehr_sdk::Error> {
    Client::connect_with(ConnectOptions {
        endpoint: Some(format!("http://{}", daemon.api)),
        token: token.map(str::to_string),
        // A data dir without a token file, so only the explicit token is used.
        data_dir: Some("/nonexistent".into()),
        ..Default::default()
    })
    .await
}

#[test]
fn starts_serves_health_and_info_through_sdk_and_cli() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", daemon.api))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        for service in ["", "mehr.v1.NodeService"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap();
            assert_eq!(
                status.into_inner().status(),
                ServingStatus::Serving,
                "health of {service:?}"
            );
        }

        let info = daemon.client().await.unwrap().info().await.unwrap();
        assert_eq!(info.identity_hash.len(), 16);
        assert_eq!(info.x25519_public_key.len(), 32);
        assert_eq!(info.ed25519_public_key.len(), 32);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.participation_level(), pb::ParticipationLevel::L2Full);
        assert_eq!(
            std::path::Path::new(&info.data_dir),
            daemon.data_dir.canonicalize().unwrap()
        );
        let kinds: Vec<_> = info
            .api_endpoints
            .iter()
            .map(|e| (e.kind(), e.requires_token, e.tls))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (pb::ApiEndpointKind::Unix, false, false),
                (pb::ApiEndpointKind::Tcp, true, false)
            ]
        );
        assert_eq!(info.api_endpoints[1].address, daemon.api.to_string());

        let output = daemon.cli(&["--json", "info"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["node_id"], hex::encode(&info.identity_hash));
        assert_eq!(json["participation_level"], "L2");
        assert_eq!(json["api_endpoints"][1]["address"], daemon.api.to_string());

        let human = daemon.cli(&["info"]);
        let text = String::from_utf8(human.stdout).unwrap();
        assert!(
            text.contains(&format!(
                "node id        {}",
                hex::encode(&info.identity_hash)
            )),
            "{text}"
        );
    });
}

#[test]
fn restart_keeps_the_identity() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("node");
    let first = TestDaemon::start_in(&data_dir, &[]);
    let rt = runtime();
    let before = rt.block_on(async { first.client().await.unwrap().info().await.unwrap() });
    drop(first);
    let second = TestDaemon::start_in(&data_dir, &[]);
    let after = rt.block_on(async { second.client().await.unwrap().info().await.unwrap() });
    assert_eq!(before.identity_hash, after.identity_hash);
    assert_eq!(before.ed25519_public_key, after.ed25519_public_key);
}

#[test]
fn tcp_requires_the_token_but_health_and_reflection_do_not() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let missing = tcp_client(&daemon, None).await;
        // The SDK refuses to connect over TCP without any token source.
        assert!(
            matches!(missing, Err(mehr_sdk::Error::Credentials { .. })),
            "{missing:?}"
        );

        let wrong = tcp_client(&daemon, Some("0000"))
            .await
            .unwrap()
            .info()
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Some(tonic::Code::Unauthenticated));
        assert!(
            wrong.to_string().contains("invalid bearer token"),
            "{wrong}"
        );

        // A raw client that sends nothing at all.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", daemon.api))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let bare = pb::node_service_client::NodeServiceClient::new(channel.clone())
            .get_info(pb::GetInfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(bare.code(), tonic::Code::Unauthenticated);
        assert!(
            bare.message().contains("missing bearer token"),
            "{}",
            bare.message()
        );

        let info = tcp_client(&daemon, Some(&daemon.token()))
            .await
            .unwrap()
            .info()
            .await
            .unwrap();
        assert_eq!(info.identity_hash.len(), 16);

        // The SDK finds the token in the data dir by itself.
        let discovered = Client::connect_with(ConnectOptions {
            endpoint: Some(daemon.api.to_string()),
            data_dir: Some(daemon.data_dir.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(
            discovered.info().await.unwrap().identity_hash,
            info.identity_hash
        );

        let services = list_services(channel).await;
        assert!(
            services.contains(&"mehr.v1.NodeService".to_string()),
            "{services:?}"
        );
        assert!(
            services.contains(&"grpc.health.v1.Health".to_string()),
            "{services:?}"
        );
    });
}

async fn list_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match responses
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        MessageResponse::ListServicesResponse(list) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[test]
fn off_loopback_is_served_with_tls_only() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("node");
    let port = free_port();
    let mut daemon = TestDaemon::spawn(&data_dir, format!("0.0.0.0:{port}").parse().unwrap(), &[]);
    daemon.wait_ready();
    assert!(
        daemon.stderr().contains("tls/cert.pem"),
        "the certificate's path is logged"
    );
    runtime().block_on(async {
        let secure = Client::connect_with(ConnectOptions {
            endpoint: Some(format!("https://127.0.0.1:{port}")),
            data_dir: Some(data_dir.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(secure.info().await.unwrap().identity_hash.len(), 16);

        let plain = Client::connect_with(ConnectOptions {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            data_dir: Some(data_dir.clone()),
            connect_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        })
        .await;
        let refused = match plain {
            Err(e) => e.to_string(),
            Ok(client) => client.info().await.unwrap_err().to_string(),
        };
        assert!(!refused.is_empty());
    });
}

#[test]
fn sigterm_ends_event_streams_and_exits_cleanly_within_5s() {
    let mut daemon = TestDaemon::start();
    let rt = runtime();
    let client = rt.block_on(daemon.client()).unwrap();
    let mut events = rt.block_on(client.watch_events()).unwrap();

    let status = daemon
        .stop_with(Signal::SIGTERM, Duration::from_secs(5))
        .expect("exits within 5 s");
    assert!(status.success(), "exit status {status}");
    rt.block_on(async {
        let event = tokio::time::timeout(Duration::from_secs(2), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match event.kind {
            Some(pb::node_event::Kind::ShuttingDown(e)) => assert_eq!(e.reason, "SIGTERM"),
            other => panic!("expected ShuttingDown, got {other:?}"),
        }
        assert!(
            events.next().await.is_none(),
            "the stream ends after ShuttingDown"
        );
    });
    assert!(
        !daemon.data_dir.join("mehrd.sock").exists(),
        "socket removed"
    );
    assert!(
        daemon.stderr().contains("stopped cleanly"),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn second_daemon_on_the_same_data_dir_fails_clearly() {
    let first = TestDaemon::start();
    let output = Command::new(bin("mehrd"))
        .arg("--data-dir")
        .arg(&first.data_dir)
        .args(["--api-listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is in use by another mehrd"), "{stderr}");
    let pid = first.child.as_ref().unwrap().id().to_string();
    assert!(stderr.contains(&pid), "names the holder's pid: {stderr}");
    // The first daemon is unharmed.
    runtime().block_on(async { first.client().await.unwrap().info().await.unwrap() });
}

#[test]
fn damaged_identity_file_is_a_clear_error_and_left_untouched() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("node");
    drop(TestDaemon::start_in(&data_dir, &[]));
    let key_path = data_dir.join("identity");
    let run = || {
        Command::new(bin("mehrd"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--api-listen", &format!("127.0.0.1:{}", free_port())])
            .output()
            .unwrap()
    };

    let mut truncated = std::fs::read(&key_path).unwrap();
    truncated.truncate(50);
    std::fs::write(&key_path, &truncated).unwrap();
    let output = run();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&key_path.display().to_string()) && stderr.contains("corrupt"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        truncated,
        "file untouched"
    );

    // Right length, wrong bytes: caught by the identity recorded in the store.
    let flipped = vec![0x5a; 64];
    std::fs::write(&key_path, &flipped).unwrap();
    let output = run();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("corrupt or was replaced"), "{stderr}");
    assert_eq!(std::fs::read(&key_path).unwrap(), flipped, "file untouched");
}

#[test]
fn config_errors_and_print_config() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("mehrd.toml");
    std::fs::write(&file, "[api]\nlisten = [\"127.0.0.1:9\"]\nbogus = 1\n").unwrap();
    let output = Command::new(bin("mehrd"))
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown key `api.bogus`") && stderr.contains("mehrd.toml"),
        "{stderr}"
    );

    std::fs::write(&file, "[log]\nformat = \"json\"\n").unwrap();
    let output = Command::new(bin("mehrd"))
        .arg("--config")
        .arg(&file)
        .args(["--print-config", "--data-dir", "/srv/mehr"])
        .env("MEHR_LOG_LEVEL", "debug")
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed: toml::Table = toml::from_str(&String::from_utf8(output.stdout).unwrap()).unwrap();
    assert_eq!(printed["data_dir"].as_str(), Some("/srv/mehr"));
    assert_eq!(printed["log"]["format"].as_str(), Some("json"));
    assert_eq!(printed["log"]["level"].as_str(), Some("debug"));
}

#[test]
fn json_logs_are_json_lines() {
    let temp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start_in(&temp.path().join("node"), &["--log-format", "json"]);
    let log = daemon.stderr();
    let first = log.lines().next().expect("some log line");
    let parsed: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(parsed.get("level").is_some(), "{parsed}");
}

#[test]
fn logs_to_a_file_have_no_colour_and_a_callers_error_is_not_an_error() {
    let temp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start_in(&temp.path().join("node"), &[]);
    // A caller's mistake: an object that does not exist (NOT_FOUND).
    let missing = "0".repeat(64);
    let out = daemon.cli(&["store", "stat", &missing]);
    assert!(!out.status.success(), "stat of a missing object succeeded");
    // A server-side failure for contrast would need a broken node; the classification of
    // each code is in api/mod.rs (`trace_layer`).
    let log = daemon.stderr();
    assert!(!log.is_empty(), "the daemon logged nothing");
    assert!(
        !log.contains('\u{1b}'),
        "colour escapes in a log written to a file:\n{log}"
    );
    assert!(
        !log.lines().any(|line| line.contains("ERROR")),
        "a caller's NOT_FOUND was logged as an error:\n{log}"
    );
}

#[test]
fn cli_reports_connection_errors_in_one_line() {
    let output = Command::new(bin("mehr"))
        .args(["--data-dir", "/nonexistent/mehr", "info"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("mehr: cannot connect to unix:/nonexistent/mehr/mehrd.sock"),
        "{stderr}"
    );
}
