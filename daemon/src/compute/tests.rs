//! The compute part without the API: deployment, the registry, persistence, WASM calls and
//! served sessions fed from in-memory streams.

use std::time::Duration;

use futures::channel::mpsc as fmpsc;
use prost::bytes::Bytes;
use tokio::sync::broadcast;

use super::*;
use crate::config::Config;

const FIXTURE: &str = include_str!("../../tests/wasm/fixture.wat");

struct Setup {
    compute: Compute,
    events: broadcast::Receiver<crate::events::Event>,
    _dir: tempfile::TempDir,
}

fn config() -> ComputeConfig {
    ComputeConfig {
        compile_cache: false,
        wasm_max_concurrent_calls: 4,
        ..Config::defaults().compute
    }
}

async fn start_in(dir: &Path, config: &ComputeConfig) -> (Compute, Arc<EventBus>) {
    let store = Store::open(&dir.join("store")).unwrap();
    let events = Arc::new(EventBus::default());
    let compute = Compute::start(config, store, events.clone(), dir, CancellationToken::new())
        .await
        .unwrap();
    (compute, events)
}

async fn setup_with(config: ComputeConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (compute, events) = start_in(dir.path(), &config).await;
    Setup {
        compute,
        events: events.subscribe(),
        _dir: dir,
    }
}

async fn setup() -> Setup {
    setup_with(config()).await
}

fn fixture() -> Vec<u8> {
    mehr_compute::wat_to_wasm(FIXTURE).unwrap()
}

fn next_event(events: &mut broadcast::Receiver<crate::events::Event>) -> EventKind {
    events.try_recv().expect("an event was published").kind
}

#[tokio::test]
async fn deploy_invoke_by_name_and_by_id_then_remove() {
    let mut s = setup().await;
    let deployed = s
        .compute
        .deploy_module(fixture(), Some("fx".into()))
        .await
        .unwrap();
    assert!(deployed.created);
    assert_eq!(
        deployed.function_ids,
        ["fx/echo", "fx/fail", "fx/hog", "fx/reverse", "fx/spin"]
    );
    assert_eq!(
        next_event(&mut s.events),
        EventKind::FunctionRegistered {
            function_id: "fx/echo".into(),
            kind: FunctionKind::Wasm
        }
    );

    let done = s
        .compute
        .invoke(InvokeRequest::new("fx/reverse", "abc"))
        .await
        .unwrap();
    assert_eq!(done.output, "cba");
    assert_eq!(done.metering.kind, FunctionKind::Wasm);
    assert!(done.metering.fuel_used > 0);

    let by_id = format!("{}/echo", deployed.module_id);
    let invocation = s
        .compute
        .start_invocation(InvokeRequest::new(by_id, "x"))
        .unwrap();
    assert_eq!(
        invocation.function_id(),
        "fx/echo",
        "ids resolve to the canonical id"
    );

    let again = s.compute.deploy_module(fixture(), None).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.name.as_deref(), Some("fx"));

    let removed = s.compute.remove_module("fx").await.unwrap();
    assert_eq!(removed.function_ids.len(), 5);
    assert!(matches!(
        s.compute
            .start_invocation(InvokeRequest::new("fx/echo", "")),
        Err(InvokeFailure::UnknownFunction { .. })
    ));
    assert!(matches!(
        s.compute.remove_module("fx").await,
        Err(RemoveError::NotFound { .. })
    ));
}

#[tokio::test]
async fn names_are_unique_and_fixed() {
    let s = setup().await;
    s.compute
        .deploy_module(fixture(), Some("fx".into()))
        .await
        .unwrap();
    let other = mehr_compute::wat_to_wasm(&FIXTURE.replace("\"echo\"", "\"echo2\"")).unwrap();
    assert!(matches!(
        s.compute
            .deploy_module(other.clone(), Some("fx".into()))
            .await,
        Err(DeployError::NameTaken { .. })
    ));
    assert!(matches!(
        s.compute
            .deploy_module(fixture(), Some("other".into()))
            .await,
        Err(DeployError::AlreadyDeployedAs { .. })
    ));
    let err = s
        .compute
        .deploy_module(other, Some("no/slash".into()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("name `no/slash` has '/'"),
        "{err}"
    );
    assert!(matches!(
        s.compute.deploy_module(b"not wasm".to_vec(), None).await,
        Err(DeployError::Module(
            mehr_compute::DeployError::NotWasmBinary
        ))
    ));
}

#[tokio::test]
async fn modules_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = ComputeConfig {
        compile_cache: true,
        ..config()
    };
    let module_id = {
        let (compute, _) = start_in(dir.path(), &config).await;
        let deployed = compute
            .deploy_module(fixture(), Some("fx".into()))
            .await
            .unwrap();
        let unnamed = FIXTURE.replace("\"spin\"", "\"spin2\"");
        compute
            .deploy_module(mehr_compute::wat_to_wasm(&unnamed).unwrap(), None)
            .await
            .unwrap();
        deployed.module_id
    };
    let (compute, _) = start_in(dir.path(), &config).await;
    let page = compute.list_functions("", 0).unwrap();
    assert_eq!(page.functions.len(), 10);
    let fx: Vec<_> = page
        .functions
        .iter()
        .filter(|f| f.module_id == Some(module_id))
        .map(|f| f.function_id.as_str())
        .collect();
    assert_eq!(
        fx,
        ["fx/echo", "fx/fail", "fx/hog", "fx/reverse", "fx/spin"]
    );
    let done = compute
        .invoke(InvokeRequest::new("fx/echo", "still here"))
        .await
        .unwrap();
    assert_eq!(done.output, "still here");
    assert!(dir.path().join(COMPILE_CACHE_DIR).is_dir());
}

#[tokio::test]
async fn listing_pages_in_id_order() {
    let s = setup().await;
    s.compute
        .deploy_module(fixture(), Some("fx".into()))
        .await
        .unwrap();
    let first = s.compute.list_functions("", 2).unwrap();
    let ids: Vec<_> = first
        .functions
        .iter()
        .map(|f| f.function_id.clone())
        .collect();
    assert_eq!(ids, ["fx/echo", "fx/fail"]);
    let token = first.next_page_token.unwrap();
    let second = s.compute.list_functions(&token, 10).unwrap();
    assert_eq!(second.functions.len(), 3);
    assert_eq!(second.next_page_token, None);
    assert_eq!(
        second.functions[0].function_hash,
        *blake3::hash(b"fx/hog").as_bytes()
    );
    assert_eq!(
        s.compute.list_functions("zz", 10),
        Err(ListError::BadPageToken)
    );
}

#[tokio::test]
async fn wasm_limits_are_precise_errors() {
    let s = setup_with(ComputeConfig {
        wasm_max_input_bytes: 8,
        ..config()
    })
    .await;
    s.compute
        .deploy_module(fixture(), Some("fx".into()))
        .await
        .unwrap();
    let call = |f: &str, input: &'static str| InvokeRequest::new(f, input);

    let fuel = s
        .compute
        .invoke(InvokeRequest {
            max_fuel: Some(10_000),
            ..call("fx/spin", "")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            fuel,
            InvokeFailure::Wasm {
                source: mehr_compute::InvokeError::OutOfFuel { limit: 10_000 },
                ..
            }
        ),
        "{fuel}"
    );

    let trap = s.compute.invoke(call("fx/fail", "")).await.unwrap_err();
    assert!(trap.to_string().contains("unreachable"), "{trap}");

    let memory = s.compute.invoke(call("fx/hog", "")).await.unwrap_err();
    assert!(
        matches!(
            memory,
            InvokeFailure::Wasm {
                source: mehr_compute::InvokeError::MemoryLimit { .. },
                ..
            }
        ),
        "{memory}"
    );

    let big = s
        .compute
        .start_invocation(call("fx/echo", "123456789"))
        .unwrap_err();
    assert_eq!(
        big.to_string(),
        "input is 9 bytes, function `fx/echo` accepts at most 8"
    );

    let unknown = s.compute.start_invocation(call("fx/nope", "")).unwrap_err();
    assert_eq!(unknown.to_string(), "no function `fx/nope` on this node");
    assert_eq!(
        s.compute.start_invocation(call("", "")).unwrap_err(),
        InvokeFailure::EmptyFunctionId
    );

    let done = s.compute.invoke(call("fx/echo", "fine")).await.unwrap();
    assert_eq!(
        done.output, "fine",
        "the sandbox is healthy after each failure"
    );
}

#[tokio::test]
async fn wasm_deadline_interrupts_a_loop() {
    let s = setup_with(ComputeConfig {
        wasm_fuel: u64::MAX / 2,
        ..config()
    })
    .await;
    s.compute
        .deploy_module(fixture(), Some("fx".into()))
        .await
        .unwrap();
    let failure = s
        .compute
        .invoke(InvokeRequest {
            deadline: Some(Duration::from_millis(50)),
            ..InvokeRequest::new("fx/spin", "")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            failure,
            InvokeFailure::Wasm {
                source: mehr_compute::InvokeError::Deadline { .. },
                ..
            }
        ),
        "{failure}"
    );
}

fn spec(name: &str, concurrency: u32) -> ServedFunctionSpec {
    ServedFunctionSpec {
        name: name.into(),
        description: format!("{name} for tests"),
        price_per_invocation_umhr: 3,
        max_concurrency: concurrency,
        max_input_bytes: 0,
    }
}

type Inbound = fmpsc::UnboundedSender<Result<FromProvider, SessionViolation>>;

fn serve(compute: &Compute, specs: Vec<ServedFunctionSpec>) -> (Inbound, Outbound) {
    let (tx, rx) = fmpsc::unbounded();
    let outbound = compute.serve(specs, rx).unwrap();
    (tx, outbound)
}

async fn next_invocation(outbound: &mut Outbound) -> (u64, Bytes) {
    match outbound.recv().await {
        Some(Ok(ToProvider::Invocation {
            invocation_id,
            input,
            ..
        })) => (invocation_id, input),
        other => panic!("expected an invocation, got {other:?}"),
    }
}

#[tokio::test]
async fn served_function_round_trip_and_listing() {
    let mut s = setup().await;
    let (inbound, mut outbound) = serve(&s.compute, vec![spec("upper", 2)]);
    assert_eq!(
        next_event(&mut s.events),
        EventKind::FunctionRegistered {
            function_id: "upper".into(),
            kind: FunctionKind::Served
        }
    );
    let listed = s.compute.list_functions("", 0).unwrap().functions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].price, Price::PerInvocation(3));
    assert_eq!(
        listed[0].max_input_bytes,
        config().served_max_input_bytes,
        "0 means the node's maximum"
    );

    let compute = s.compute.clone();
    let caller =
        tokio::spawn(async move { compute.invoke(InvokeRequest::new("upper", "abc")).await });
    let (id, input) = next_invocation(&mut outbound).await;
    assert_eq!(input, "abc");
    inbound
        .unbounded_send(Ok(FromProvider::Output {
            invocation_id: id,
            output: "A".into(),
        }))
        .unwrap();
    inbound
        .unbounded_send(Ok(FromProvider::Result {
            invocation_id: id,
            output: "BC".into(),
        }))
        .unwrap();
    let done = caller.await.unwrap().unwrap();
    assert_eq!(done.output, "ABC");
    assert_eq!(done.metering.kind, FunctionKind::Served);
}

#[tokio::test]
async fn registration_rules() {
    let s = setup().await;
    let (_inbound, _outbound) = serve(&s.compute, vec![spec("taken", 1)]);
    let (_, rx) = fmpsc::unbounded();
    assert_eq!(
        s.compute
            .serve(vec![spec("free", 1), spec("taken", 1)], rx)
            .unwrap_err(),
        RegistrationError::AlreadyServed {
            function_id: "taken".into()
        }
    );
    assert!(
        s.compute.list_functions("", 0).unwrap().functions.len() == 1,
        "a refused registration registers nothing"
    );
    let (_, rx) = fmpsc::unbounded();
    assert_eq!(
        s.compute
            .serve(vec![spec("a", 1), spec("a", 1)], rx)
            .unwrap_err()
            .to_string(),
        "register.functions[1].name: `a` appears twice in this registration"
    );
    let (_, rx) = fmpsc::unbounded();
    assert_eq!(
        s.compute.serve(vec![], rx).unwrap_err(),
        RegistrationError::NoFunctions
    );
}

#[tokio::test]
async fn disconnect_fails_running_calls_and_unregisters() {
    let mut s = setup().await;
    let (inbound, mut outbound) = serve(&s.compute, vec![spec("slow", 1)]);
    let _ = next_event(&mut s.events);
    let compute = s.compute.clone();
    let caller = tokio::spawn(async move { compute.invoke(InvokeRequest::new("slow", "")).await });
    next_invocation(&mut outbound).await;
    drop(inbound);
    assert_eq!(
        caller.await.unwrap().unwrap_err(),
        InvokeFailure::ProviderDisconnected {
            function_id: "slow".into()
        }
    );
    assert!(
        s.compute
            .list_functions("", 0)
            .unwrap()
            .functions
            .is_empty()
    );
    assert!(
        outbound.recv().await.is_none(),
        "the stream to the server ends"
    );
    assert_eq!(
        next_event(&mut s.events),
        EventKind::FunctionUnregistered {
            function_id: "slow".into(),
            kind: FunctionKind::Served,
            reason: "server disconnected".into()
        }
    );
}

#[tokio::test]
async fn drain_refuses_new_calls_and_lets_running_ones_finish() {
    let s = setup().await;
    let (inbound, mut outbound) = serve(&s.compute, vec![spec("f", 1)]);
    let compute = s.compute.clone();
    let running = tokio::spawn(async move { compute.invoke(InvokeRequest::new("f", "1")).await });
    let (id, _) = next_invocation(&mut outbound).await;
    let compute = s.compute.clone();
    let queued = tokio::spawn(async move { compute.invoke(InvokeRequest::new("f", "2")).await });
    while s.compute.list_functions("", 0).unwrap().functions[0].queued == 0 {
        tokio::task::yield_now().await;
    }
    inbound.unbounded_send(Ok(FromProvider::Drain)).unwrap();
    assert_eq!(
        queued.await.unwrap().unwrap_err(),
        InvokeFailure::NoLongerServed {
            function_id: "f".into()
        }
    );
    assert!(matches!(
        s.compute.start_invocation(InvokeRequest::new("f", "3")),
        Err(InvokeFailure::UnknownFunction { .. })
    ));
    inbound
        .unbounded_send(Ok(FromProvider::Result {
            invocation_id: id,
            output: "one".into(),
        }))
        .unwrap();
    assert_eq!(running.await.unwrap().unwrap().output, "one");
    // The same name can be served again by another stream.
    let (_again, _out) = serve(&s.compute, vec![spec("f", 1)]);
}

#[tokio::test]
async fn a_violation_ends_the_stream_with_an_error() {
    let s = setup().await;
    let (inbound, mut outbound) = serve(&s.compute, vec![spec("f", 1)]);
    inbound.unbounded_send(Ok(FromProvider::Register)).unwrap();
    assert_eq!(
        outbound.recv().await,
        Some(Err(SessionViolation::RegisteredTwice))
    );
    assert!(outbound.recv().await.is_none());
    assert!(
        s.compute
            .list_functions("", 0)
            .unwrap()
            .functions
            .is_empty()
    );
}

#[tokio::test]
async fn shutdown_ends_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let shutdown = CancellationToken::new();
    let compute = Compute::start(
        &config(),
        store,
        Arc::new(EventBus::default()),
        dir.path(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let (_inbound, mut outbound) = serve(&compute, vec![spec("f", 1)]);
    shutdown.cancel();
    assert!(outbound.recv().await.is_none());
    let (_, rx) = fmpsc::unbounded();
    assert_eq!(
        compute.serve(vec![spec("g", 1)], rx).unwrap_err(),
        RegistrationError::ShuttingDown
    );
}
