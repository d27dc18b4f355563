//! The Rust SDK's dynamic batching against a real daemon: concurrent callers merged into one
//! handler call and answered each with its own output, error, metering and deadline.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::TestDaemon;
use mehr_sdk::{
    InvokeOptions,
    serve::{
        Call, FunctionSpec, HandlerError,
        batch::{BatchOutputs, BatchPolicy, Batcher, batch_handler_fn, blocking_batch_handler_fn},
    },
};
use prost::bytes::Bytes;
use tonic::Code;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn code_of(result: Result<impl std::fmt::Debug, mehr_sdk::Error>) -> (Code, String) {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(mehr_sdk::Error::Status(status)) => (status.code(), status.message().to_string()),
        Err(other) => panic!("expected a status, got {other}"),
    }
}

#[test]
fn concurrent_callers_share_one_handler_call_and_keep_their_own_answers() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let seen = batches.clone();
        let shout = batch_handler_fn(move |calls: Vec<Call>| {
            let seen = seen.clone();
            async move {
                let inputs: Vec<String> = calls
                    .iter()
                    .map(|call| String::from_utf8_lossy(&call.input).into_owned())
                    .collect();
                seen.lock().unwrap().push(inputs.clone());
                let outputs: BatchOutputs = inputs
                    .iter()
                    .map(|input| match input.as_str() {
                        "bad" => Err(HandlerError::new("cannot shout `bad`")),
                        text => Ok(Bytes::from(text.to_uppercase())),
                    })
                    .collect();
                Ok(outputs)
            }
        });
        // A full batch runs at once; the long wait shows that it did not wait.
        let policy = BatchPolicy::new(8).max_wait(Duration::from_secs(30));
        let batcher = Batcher::new(policy, shout);
        let serving = client
            .serve(
                vec![FunctionSpec::new("shout").batched(&policy)],
                batcher.clone(),
            )
            .await
            .unwrap();
        let offered = client.list_functions().await.unwrap();
        assert_eq!(offered[0].max_concurrency, 16, "8 running and 8 waiting");

        let inputs = ["c0", "c1", "c2", "bad", "c4", "c5", "c6", "c7"];
        let calls = inputs.map(|input| {
            let client = client.clone();
            tokio::spawn(async move { client.invoke("shout", input).await })
        });
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        for (input, answer) in inputs.iter().zip(answers) {
            if *input == "bad" {
                assert_eq!(
                    code_of(answer),
                    (
                        Code::Aborted,
                        "function `shout` failed: cannot shout `bad`".to_string()
                    ),
                    "the bad input fails alone"
                );
            } else {
                let answer = answer.unwrap();
                assert_eq!(answer.output, input.to_uppercase());
                assert!(answer.metering.is_some(), "each call is metered");
            }
        }
        let mut merged = batches.lock().unwrap().clone();
        assert_eq!(merged.len(), 1, "one handler call for eight callers");
        merged[0].sort();
        let mut expected = inputs.map(String::from).to_vec();
        expected.sort();
        assert_eq!(merged[0], expected);
        let stats = batcher.stats();
        assert_eq!((stats.batches, stats.calls, stats.largest), (1, 8, 8));
        serving.stop().await.unwrap();
    });
}

#[test]
fn a_caller_whose_deadline_passes_inside_a_batch_fails_alone() {
    let daemon = TestDaemon::start();
    runtime().block_on(async {
        let client = daemon.client().await.unwrap();
        // Works until the hasty caller's call is withdrawn, then answers every call.
        let handler = blocking_batch_handler_fn(|calls: Vec<Call>| {
            let hasty = calls
                .iter()
                .find(|call| &call.input[..] == b"hasty")
                .ok_or_else(|| HandlerError::new("no hasty call in the batch"))?;
            let give_up = std::time::Instant::now() + Duration::from_secs(20);
            while !hasty.is_cancelled() && std::time::Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(calls
                .iter()
                .map(|call| {
                    Ok(Bytes::from(format!(
                        "{} cancelled={}",
                        String::from_utf8_lossy(&call.input),
                        call.is_cancelled()
                    )))
                })
                .collect())
        });
        let policy = BatchPolicy::new(2).max_wait(Duration::from_secs(30));
        let serving = client
            .serve(
                vec![FunctionSpec::new("mixed").batched(&policy)],
                Batcher::new(policy, handler),
            )
            .await
            .unwrap();
        let hasty = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .invoke_with(
                        "mixed",
                        "hasty",
                        InvokeOptions::default().deadline(Duration::from_millis(300)),
                    )
                    .await
            })
        };
        let patient = client
            .invoke_with(
                "mixed",
                "patient",
                InvokeOptions::default().deadline(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        assert_eq!(patient.output, "patient cancelled=false");
        let (code, _) = code_of(hasty.await.unwrap());
        assert_eq!(code, Code::DeadlineExceeded);
        serving.stop().await.unwrap();
    });
}
