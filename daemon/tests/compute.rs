//! ComputeService end to end, with real daemons: WASM modules deployed and invoked through the
//! SDK and the CLI, functions served by the Rust SDK (streaming, concurrency limits, queueing,
//! handler errors, disconnection, deadlines), every failure as a clear status, and modules
//! surviving a restart.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::TestDaemon;
use futures::StreamExt;
use mehr_sdk::{
    InvokeOptions, proto as pb,
    serve::{Call, FunctionSpec, HandlerError, OutputSink, blocking_handler_fn, handler_fn},
};
use tokio::sync::{Notify, Semaphore, mpsc};
use tonic::Code;

const FIXTURE: &str = include_str!("wasm/fixture.wat");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A daemon in a temp dir with `compute_toml` as its `[compute]` section.
struct Node {
    daemon: TestDaemon,
    dir: tempfile::TempDir,
}

impl Node {
    fn start(compute_toml: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let daemon = start_daemon(dir.path(), compute_toml);
        Node { daemon, dir }
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

fn start_daemon(dir: &Path, compute_toml: &str) -> TestDaemon {
    let config = dir.join("mehrd.toml");
    std::fs::write(&config, format!("[compute]\n{compute_toml}")).unwrap();
    TestDaemon::start_in(&dir.join("node"), &["--config", config.to_str().unwrap()])
}

fn fixture() -> Vec<u8> {
    mehr_compute::wat_to_wasm(FIXTURE).unwrap()
}

fn code_of(result: Result<impl std::fmt::Debug, mehr_sdk::Error>) -> (Code, String) {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(mehr_sdk::Error::Status(status)) => (status.code(), status.message().to_string()),
        Err(other) => panic!("expected a status, got {other}"),
    }
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "mehr failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn cli_with_stdin(daemon: &TestDaemon, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(common::bin("mehr"))
        .arg("--data-dir")
        .arg(&daemon.data_dir)
        .args(args)
        .env_remove("MEHR_ENDPOINT")
        .env_remove("MEHR_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn wasm_module_deployed_and_invoked_through_sdk_and_cli() {
    let node = Node::start("");
    let daemon = &node.daemon;
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        let deployed = client.deploy_module(fixture(), Some("fx")).await.unwrap();
        assert!(deployed.created);
        assert_eq!(deployed.module_id.len(), 32);
        assert_eq!(
            deployed.function_ids,
            ["fx/echo", "fx/fail", "fx/hog", "fx/reverse", "fx/spin"]
        );

        let info = client.info().await.unwrap();
        let response = client.invoke("fx/reverse", "stressed").await.unwrap();
        assert_eq!(response.output, "desserts");
        let metering = response.metering.unwrap();
        assert_eq!(metering.kind(), pb::FunctionKind::Wasm);
        assert!(metering.fuel_used > 0);
        assert_eq!(metering.provider_node_id, info.identity_hash);

        let by_id = format!("{}/echo", hex::encode(&deployed.module_id));
        assert_eq!(client.invoke(&by_id, "same").await.unwrap().output, "same");

        let mut stream = client
            .invoke_stream("fx/echo", "once", InvokeOptions::default())
            .await
            .unwrap();
        let only = stream.next().await.unwrap().unwrap();
        assert!(only.done, "a WASM function answers in one message");
        assert_eq!(only.output, "once");
        assert!(stream.next().await.is_none());

        let functions = client.list_functions().await.unwrap();
        assert_eq!(functions.len(), 5);
        let echo = &functions[0];
        assert_eq!(echo.function_id, "fx/echo");
        assert_eq!(echo.kind(), pb::FunctionKind::Wasm);
        assert_eq!(
            echo.function_hash,
            blake3::hash(b"fx/echo").as_bytes().to_vec()
        );
        assert_eq!(echo.module_id, deployed.module_id);
        assert!(matches!(
            echo.price.as_ref().unwrap().kind,
            Some(pb::function_price::Kind::PerMillionFuelUmhr(1))
        ));
        let page = client.list_functions_page(2, "").await.unwrap();
        assert_eq!(page.functions.len(), 2);
        let rest = client
            .list_functions_page(10, &page.next_page_token)
            .await
            .unwrap();
        assert_eq!(rest.functions.len(), 3);
        assert!(rest.next_page_token.is_empty());
    });

    // The CLI: WAT text is converted before upload.
    let wat = node.file(
        "text.wat",
        FIXTURE.replace("\"echo\"", "\"say\"").as_bytes(),
    );
    let text = stdout(&daemon.cli(&["deploy", wat.to_str().unwrap(), "--name", "text"]));
    assert!(text.contains("status     deployed"), "{text}");
    assert!(text.contains("text/say"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&daemon.cli(&[
        "--json",
        "deploy",
        wat.to_str().unwrap(),
        "--name",
        "text",
    ])))
    .unwrap();
    assert_eq!(json["created"], false);
    assert_eq!(json["name"], "text");

    let input = node.file("input.txt", b"hello");
    let out = daemon.cli(&["invoke", "text/reverse", "--input", input.to_str().unwrap()]);
    assert_eq!(stdout(&out), "olleh");
    let piped = cli_with_stdin(daemon, &["invoke", "text/say"], b"from stdin");
    assert_eq!(stdout(&piped), "from stdin");
    let out_file = node.dir.path().join("out.bin");
    let summary = stdout(&cli_with_stdin(
        daemon,
        &["invoke", "text/reverse", "-o", out_file.to_str().unwrap()],
        b"abc",
    ));
    assert!(summary.starts_with("wrote 3 bytes to "), "{summary}");
    assert_eq!(std::fs::read(&out_file).unwrap(), b"cba");

    let json: serde_json::Value = serde_json::from_str(&stdout(&cli_with_stdin(
        daemon,
        &["--json", "invoke", "text/reverse"],
        b"xyz",
    )))
    .unwrap();
    assert_eq!(json["output_text"], "zyx");
    assert_eq!(json["output_hex"], hex::encode("zyx"));
    assert_eq!(json["metering"]["kind"], "wasm");
    assert!(json["metering"]["fuel_used"].as_u64().unwrap() > 0);

    let table = stdout(&daemon.cli(&["functions"]));
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("FUNCTION"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("text/say") && l.contains("wasm")),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&daemon.cli(&["--json", "functions"]))).unwrap();
    assert_eq!(json["functions"].as_array().unwrap().len(), 10);

    let removed = stdout(&daemon.cli(&["--json", "undeploy", "text"]));
    let json: serde_json::Value = serde_json::from_str(&removed).unwrap();
    assert_eq!(json["function_ids"].as_array().unwrap().len(), 5);

    let failed = daemon.cli(&["invoke", "text/say"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8(failed.stderr).unwrap();
    assert!(
        stderr.starts_with("mehr: NOT_FOUND: no function `text/say` on this node, and 0 provider"),
        "{stderr}"
    );
}

#[test]
fn wasm_failures_are_clear_errors_and_the_daemon_stays_healthy() {
    let node = Node::start("wasm_fuel = 100000000000\nwasm_max_input_bytes = 64\n");
    let daemon = &node.daemon;
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        client.deploy_module(fixture(), Some("fx")).await.unwrap();
        let healthy = || async {
            assert_eq!(client.invoke("fx/echo", "ok").await.unwrap().output, "ok");
        };

        let (code, message) = code_of(
            client
                .invoke_with("fx/spin", "", InvokeOptions::default().max_fuel(50_000))
                .await,
        );
        assert_eq!(code, Code::ResourceExhausted);
        assert!(message.contains("out of fuel"), "{message}");
        healthy().await;

        let (code, message) = code_of(
            client
                .invoke_with(
                    "fx/spin",
                    "",
                    InvokeOptions::default().deadline(Duration::from_millis(100)),
                )
                .await,
        );
        assert_eq!(code, Code::DeadlineExceeded, "{message}");
        healthy().await;

        let (code, message) = code_of(client.invoke("fx/fail", "").await);
        assert_eq!(code, Code::Aborted);
        assert!(
            message.starts_with("function `fx/fail`: guest trapped"),
            "{message}"
        );
        healthy().await;

        let (code, message) = code_of(client.invoke("fx/hog", "").await);
        assert_eq!(code, Code::ResourceExhausted);
        assert!(message.contains("memory limit"), "{message}");
        healthy().await;

        let (code, message) = code_of(client.invoke("fx/echo", vec![0u8; 65]).await);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(
            message,
            "input is 65 bytes, function `fx/echo` accepts at most 64"
        );

        let (code, message) = code_of(client.invoke("fx/missing", "").await);
        assert_eq!(code, Code::NotFound);
        assert!(
            message.starts_with("no function `fx/missing` on this node, and 0 provider(s)"),
            "{message}"
        );
        let (code, _) = code_of(client.invoke("nobody-serves-this", "").await);
        assert_eq!(code, Code::NotFound);
        let (code, message) = code_of(client.invoke("", "").await);
        assert_eq!(
            (code, message.as_str()),
            (Code::InvalidArgument, "function_id must not be empty")
        );

        let (code, message) = code_of(client.deploy_module(b"\0asm-broken".to_vec(), None).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        let (code, message) = code_of(client.deploy_module(fixture(), Some("bad name")).await);
        assert_eq!(code, Code::InvalidArgument);
        assert!(message.starts_with("name `bad name` has ' '"), "{message}");
        let other = mehr_compute::wat_to_wasm(&FIXTURE.replace("\"hog\"", "\"hog2\"")).unwrap();
        let (code, _) = code_of(client.deploy_module(other, Some("fx")).await);
        assert_eq!(code, Code::AlreadyExists);
        let (code, _) = code_of(client.remove_module("nothing").await);
        assert_eq!(code, Code::NotFound);
        healthy().await;
    });

    let fuel = daemon.cli(&["invoke", "fx/spin", "--max-fuel", "1000"]);
    assert!(!fuel.status.success());
    assert_eq!(
        String::from_utf8(fuel.stderr).unwrap().trim(),
        "mehr: RESOURCE_EXHAUSTED: function `fx/spin`: out of fuel: the limit of 1000 was used up"
    );
}

#[test]
fn module_size_comes_from_config() {
    let node = Node::start("max_module_bytes = 200\n");
    runtime().block_on(async {
        let client = node.daemon.client().await.unwrap();
        let (code, message) = code_of(client.deploy_module(fixture(), None).await);
        assert_eq!(code, Code::InvalidArgument);
        assert!(message.ends_with("the limit is 200"), "{message}");
    });
}

#[test]
fn modules_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let daemon = start_daemon(dir.path(), "");
    let module_id = rt.block_on(async {
        let client = daemon.client().await.unwrap();
        client
            .deploy_module(fixture(), Some("fx"))
            .await
            .unwrap()
            .module_id
    });
    drop(daemon);
    let daemon = start_daemon(dir.path(), "");
    rt.block_on(async {
        let client = daemon.client().await.unwrap();
        assert_eq!(
            client.invoke("fx/reverse", "ab").await.unwrap().output,
            "ba"
        );
        let functions = client.list_functions().await.unwrap();
        assert_eq!(functions.len(), 5);
        assert!(functions.iter().all(|f| f.module_id == module_id));
    });
    assert!(dir.path().join("node/compute-cache").is_dir());
}

/// A served function that upper-cases its input.
fn upper() -> Arc<dyn mehr_sdk::serve::Handler> {
    handler_fn(|call: Call, _output| async move {
        let text =
            std::str::from_utf8(&call.input).map_err(|e| HandlerError::new(e.to_string()))?;
        Ok(text.to_uppercase())
    })
}

#[test]
fn served_function_through_sdk_and_cli_with_events() {
    let node = Node::start("");
    let daemon = &node.daemon;
    let rt = runtime();
    let serving = rt.block_on(async {
        let client = daemon.client().await.unwrap();
        let mut events = client.watch_events().await.unwrap();
        let serving = client
            .serve(
                vec![
                    FunctionSpec::new("upper")
                        .description("upper-cases UTF-8 text")
                        .price_per_invocation_umhr(7)
                        .max_concurrency(3)
                        .max_input_bytes(1000),
                ],
                upper(),
            )
            .await
            .unwrap();
        assert_eq!(serving.functions(), ["upper"]);
        let event = events.next().await.unwrap().unwrap();
        assert!(matches!(
            event.kind,
            Some(pb::node_event::Kind::FunctionRegistered(pb::FunctionRegistered { ref function_id, kind }))
                if function_id == "upper" && kind == pb::FunctionKind::Served as i32
        ));

        let response = client.invoke("upper", "hello").await.unwrap();
        assert_eq!(response.output, "HELLO");
        let metering = response.metering.unwrap();
        assert_eq!(metering.kind(), pb::FunctionKind::Served);
        assert_eq!(metering.fuel_used, 0);

        let functions = client.list_functions().await.unwrap();
        assert_eq!(functions.len(), 1);
        let f = &functions[0];
        assert_eq!(
            (f.function_id.as_str(), f.description.as_str(), f.max_concurrency, f.max_input_bytes),
            ("upper", "upper-cases UTF-8 text", 3, 1000)
        );
        assert_eq!(f.kind(), pb::FunctionKind::Served);
        assert!(f.available_since_unix_ms > 0);
        assert!(matches!(
            f.price.as_ref().unwrap().kind,
            Some(pb::function_price::Kind::PerInvocationUmhr(7))
        ));

        let (code, message) = code_of(client.invoke("upper", vec![b'a'; 1001]).await);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(message, "input is 1001 bytes, function `upper` accepts at most 1000");

        (serving, events)
    });

    assert_eq!(
        stdout(&cli_with_stdin(daemon, &["invoke", "upper"], b"cli")),
        "CLI"
    );
    assert_eq!(
        stdout(&cli_with_stdin(
            daemon,
            &["invoke", "upper", "--stream"],
            b"streamed"
        )),
        "STREAMED"
    );
    let lines = stdout(&cli_with_stdin(
        daemon,
        &["--json", "invoke", "upper", "--stream"],
        b"json",
    ));
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["output_text"], "JSON");
    assert_eq!(last["metering"]["kind"], "served");
    let table = stdout(&daemon.cli(&["functions"]));
    let row = table.lines().find(|l| l.starts_with("upper")).unwrap();
    assert!(
        row.contains("served") && row.contains("7 μMHR/call") && row.contains("0/3"),
        "{table}"
    );
    assert!(row.ends_with("upper-cases UTF-8 text"), "{row}");

    let (serving, mut events) = serving;
    rt.block_on(async {
        serving.stop().await.unwrap();
        let event = events.next().await.unwrap().unwrap();
        assert!(matches!(
            event.kind,
            Some(pb::node_event::Kind::FunctionUnregistered(ref e))
                if e.function_id == "upper" && e.reason == "server drained"
        ));
        let client = daemon.client().await.unwrap();
        assert!(client.list_functions().await.unwrap().is_empty());
        let (code, _) = code_of(client.invoke("upper", "gone").await);
        assert_eq!(code, Code::NotFound);
    });
}

#[test]
fn partial_output_streams_end_to_end() {
    let node = Node::start("");
    runtime().block_on(async {
        let client = node.daemon.client().await.unwrap();
        // The handler sends one part, then waits for the test to have received it: that
        // proves the part travelled before the call finished.
        let received_first = Arc::new(Notify::new());
        let gate = received_first.clone();
        let handler = handler_fn(move |call: Call, output: OutputSink| {
            let gate = gate.clone();
            async move {
                output.send("first ").await?;
                gate.notified().await;
                output.send("second ").await?;
                Ok(format!("last({})", call.input.len()))
            }
        });
        let _serving = client
            .serve(vec![FunctionSpec::new("story")], handler)
            .await
            .unwrap();

        let mut stream = client
            .invoke_stream("story", "four", InvokeOptions::default())
            .await
            .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!((first.output.as_ref(), first.done), (&b"first "[..], false));
        received_first.notify_one();
        let mut rest = Vec::new();
        let mut last = None;
        while let Some(message) = stream.next().await {
            let message = message.unwrap();
            rest.extend_from_slice(&message.output);
            if message.done {
                last = Some(message);
            }
        }
        assert_eq!(rest, b"second last(4)");
        let last = last.expect("a final message");
        assert_eq!(last.metering.unwrap().kind(), pb::FunctionKind::Served);

        // Unary calls get the parts concatenated. (The notice is stored until the handler
        // waits for it.)
        received_first.notify_one();
        let whole = client.invoke("story", "xy").await.unwrap();
        assert_eq!(whole.output, "first second last(2)");
    });
}

#[test]
fn concurrency_limit_holds_under_50_parallel_calls() {
    let node = Node::start("");
    runtime().block_on(async {
        let client = node.daemon.client().await.unwrap();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let (now, max) = (in_flight.clone(), max_seen.clone());
        let handler = handler_fn(move |call: Call, _output| {
            let (now, max) = (now.clone(), max.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(call.input)
            }
        });
        let _serving = client
            .serve(
                vec![FunctionSpec::new("limited").max_concurrency(4)],
                handler,
            )
            .await
            .unwrap();
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.invoke("limited", format!("{i}")).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().unwrap().output, format!("{i}"));
        }
        assert_eq!(max_seen.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn a_full_queue_is_resource_exhausted() {
    let node = Node::start("max_queued_invocations = 8\n");
    runtime().block_on(async {
        let client = node.daemon.client().await.unwrap();
        let release = Arc::new(Semaphore::new(0));
        let gate = release.clone();
        let handler = handler_fn(move |_call: Call, _output| {
            let gate = gate.clone();
            async move {
                gate.acquire()
                    .await
                    .map_err(|e| HandlerError::new(e.to_string()))?
                    .forget();
                Ok("done")
            }
        });
        let _serving = client
            .serve(
                vec![FunctionSpec::new("narrow").max_concurrency(2)],
                handler,
            )
            .await
            .unwrap();
        let (results, mut finished) = mpsc::unbounded_channel();
        for _ in 0..30 {
            let (client, results) = (client.clone(), results.clone());
            tokio::spawn(async move {
                let _ = results.send(client.invoke("narrow", "").await);
            });
        }
        // 2 run, 8 wait, so 20 are refused while the handlers are held.
        let mut refused = 0;
        while refused < 20 {
            let (code, message) = code_of(finished.recv().await.unwrap());
            assert_eq!(code, Code::ResourceExhausted);
            assert!(
                message.ends_with("all 8 places in the queue are taken"),
                "{message}"
            );
            refused += 1;
        }
        let listed = client.list_functions().await.unwrap();
        assert_eq!((listed[0].in_flight, listed[0].queued), (2, 8));
        release.add_permits(10);
        for _ in 0..10 {
            assert_eq!(finished.recv().await.unwrap().unwrap().output, "done");
        }
    });
}

#[test]
fn handler_errors_reach_the_caller_and_serving_continues() {
    let node = Node::start("");
    let rt = runtime();
    let serving = rt.block_on(async {
        let client = node.daemon.client().await.unwrap();
        let handler = blocking_handler_fn(|call: Call, _output| -> Result<Vec<u8>, HandlerError> {
            match &call.input[..] {
                b"bad" => Err(HandlerError::new("cannot parse `bad`")),
                b"panic" => panic!("model exploded"),
                other => Ok(other.to_vec()),
            }
        });
        let serving = client
            .serve(vec![FunctionSpec::new("picky").max_concurrency(2)], handler)
            .await
            .unwrap();
        let (code, message) = code_of(client.invoke("picky", "bad").await);
        assert_eq!(code, Code::Aborted);
        assert_eq!(message, "function `picky` failed: cannot parse `bad`");
        assert_eq!(client.invoke("picky", "good").await.unwrap().output, "good");
        let (code, message) = code_of(client.invoke("picky", "panic").await);
        assert_eq!(code, Code::Aborted);
        assert_eq!(
            message,
            "function `picky` failed: handler panicked: model exploded"
        );
        assert_eq!(
            client.invoke("picky", "still").await.unwrap().output,
            "still"
        );
        serving
    });
    let failed = cli_with_stdin(&node.daemon, &["invoke", "picky"], b"bad");
    assert!(!failed.status.success());
    assert_eq!(
        String::from_utf8(failed.stderr).unwrap().trim(),
        "mehr: ABORTED: function `picky` failed: cannot parse `bad`"
    );
    rt.block_on(serving.stop()).unwrap();
}

#[test]
fn a_server_that_disconnects_mid_call_fails_the_call_and_disappears() {
    let node = Node::start("");
    let daemon = &node.daemon;
    // The server runs on its own runtime; shutting that down drops its connection the way a
    // crashed process would.
    let server_rt = runtime();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let serving = server_rt.block_on(async {
        let client = daemon.client().await.unwrap();
        let started = Arc::new(std::sync::Mutex::new(started_tx));
        let handler = handler_fn(move |_call: Call, _output| {
            let _ = started.lock().unwrap().send(());
            std::future::pending::<Result<&'static str, HandlerError>>()
        });
        client
            .serve(vec![FunctionSpec::new("fragile")], handler)
            .await
            .unwrap()
    });
    let rt = runtime();
    rt.block_on(async {
        let client = daemon.client().await.unwrap();
        let mut events = client.watch_events().await.unwrap();
        let call = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .invoke_with(
                        "fragile",
                        "",
                        InvokeOptions::default().deadline(Duration::from_secs(25)),
                    )
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        server_rt.shutdown_background();
        drop(serving);

        let (code, message) = code_of(call.await.unwrap());
        assert_eq!(code, Code::Unavailable);
        assert_eq!(message, "function `fragile`: provider disconnected");
        let event = events.next().await.unwrap().unwrap();
        assert!(matches!(
            event.kind,
            Some(pb::node_event::Kind::FunctionUnregistered(ref e))
                if e.function_id == "fragile" && e.reason == "server disconnected"
        ));
        assert!(client.list_functions().await.unwrap().is_empty());
        let (code, _) = code_of(client.invoke("fragile", "").await);
        assert_eq!(code, Code::NotFound);
    });
}

#[test]
fn deadline_exceeded_reaches_the_caller_and_cancels_the_server() {
    let node = Node::start("");
    runtime().block_on(async {
        let client = node.daemon.client().await.unwrap();
        let (cancelled_tx, mut cancelled) = mpsc::unbounded_channel();
        let handler = handler_fn(move |call: Call, _output| {
            let cancelled_tx = cancelled_tx.clone();
            async move {
                // Never answers by itself; reports the daemon's cancel from a side task, since
                // the SDK drops this future when the cancel arrives.
                let remaining = call.remaining();
                tokio::spawn(async move {
                    call.cancelled().await;
                    let _ = cancelled_tx.send(remaining);
                });
                std::future::pending::<Result<&'static str, HandlerError>>().await
            }
        });
        let _serving = client
            .serve(vec![FunctionSpec::new("sleepy")], handler)
            .await
            .unwrap();
        let (code, message) = code_of(
            client
                .invoke_with(
                    "sleepy",
                    "",
                    InvokeOptions::default().deadline(Duration::from_millis(200)),
                )
                .await,
        );
        assert_eq!(code, Code::DeadlineExceeded);
        assert_eq!(
            message,
            "function `sleepy`: deadline of 200ms exceeded while running"
        );
        let remaining = cancelled
            .recv()
            .await
            .expect("the server was told to cancel");
        assert!(remaining <= Duration::from_millis(200), "{remaining:?}");

        // Streaming callers get the same error as the stream's last item.
        let mut stream = client
            .invoke_stream(
                "sleepy",
                "",
                InvokeOptions::default().deadline(Duration::from_millis(100)),
            )
            .await
            .unwrap();
        let (code, _) = code_of(stream.next().await.unwrap());
        assert_eq!(code, Code::DeadlineExceeded);
    });
}

#[test]
fn registration_is_validated() {
    let node = Node::start("served_max_input_bytes = 4096\n");
    runtime().block_on(async {
        let client = node.daemon.client().await.unwrap();
        let (code, message) = code_of(
            client
                .serve(vec![FunctionSpec::new("has space")], upper())
                .await,
        );
        assert_eq!(code, Code::InvalidArgument);
        assert!(
            message.starts_with("register.functions[0].name: "),
            "{message}"
        );
        let (code, message) = code_of(
            client
                .serve(
                    vec![
                        FunctionSpec::new("ok"),
                        FunctionSpec::new("zero").max_concurrency(0),
                    ],
                    upper(),
                )
                .await,
        );
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(
            message,
            "register.functions[1].max_concurrency: is 0, must be 1 to 1024"
        );
        let (code, message) = code_of(
            client
                .serve(
                    vec![FunctionSpec::new("big").max_input_bytes(4097)],
                    upper(),
                )
                .await,
        );
        assert_eq!(code, Code::InvalidArgument);
        assert!(
            message.starts_with("register.functions[0].max_input_bytes: "),
            "{message}"
        );
        let (code, _) = code_of(client.serve(vec![], upper()).await);
        assert_eq!(code, Code::InvalidArgument);

        let _first = client
            .serve(vec![FunctionSpec::new("unique")], upper())
            .await
            .unwrap();
        let (code, message) = code_of(
            client
                .serve(vec![FunctionSpec::new("unique")], upper())
                .await,
        );
        assert_eq!(code, Code::AlreadyExists);
        assert_eq!(message, "function `unique` is already served on this node");
        assert_eq!(client.invoke("unique", "a").await.unwrap().output, "A");
    });
}

#[test]
fn daemon_shutdown_ends_serving_cleanly() {
    let mut node = Node::start("");
    let rt = runtime();
    let serving = rt.block_on(async {
        let client = node.daemon.client().await.unwrap();
        client
            .serve(vec![FunctionSpec::new("brief")], upper())
            .await
            .unwrap()
    });
    assert!(!serving.is_finished());
    let status = node
        .daemon
        .stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10))
        .expect("the daemon stops within its grace period");
    assert!(status.success(), "{status}");
    // Waiting needs no runtime: the way a Python thread waits without the GIL.
    serving.wait_blocking().unwrap();
    assert!(serving.is_finished());
}
