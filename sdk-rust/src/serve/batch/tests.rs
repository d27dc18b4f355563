//! The batcher on tokio's paused clock: which calls end up in which batch, what each caller
//! gets back, and what withdrawn calls do, without a daemon.

use std::sync::atomic::AtomicUsize;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::serve::Call;

/// Records each batch (its inputs) and answers each call with its input upper-cased; an
/// input `bad` gets its own error, `panic` panics, `short` returns too few outputs.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Vec<String>>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Recorder {
    fn handler(self: &Arc<Self>, work: Duration) -> Arc<dyn BatchHandler> {
        let recorder = self.clone();
        batch_handler_fn(move |calls: Vec<Call>| {
            let recorder = recorder.clone();
            async move {
                let inputs: Vec<String> = calls
                    .iter()
                    .map(|c| String::from_utf8_lossy(&c.input).into_owned())
                    .collect();
                recorder.batches.lock().unwrap().push(inputs.clone());
                let now = recorder.running.fetch_add(1, Ordering::SeqCst) + 1;
                recorder.most_running.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(work).await;
                recorder.running.fetch_sub(1, Ordering::SeqCst);
                if inputs.iter().any(|i| i == "panic") {
                    panic!("the model fell over");
                }
                if inputs.iter().any(|i| i == "short") {
                    return Ok(vec![]);
                }
                Ok(inputs
                    .iter()
                    .map(|input| match input.as_str() {
                        "bad" => Err(HandlerError::new("cannot embed `bad`")),
                        other => Ok(Bytes::from(other.to_uppercase())),
                    })
                    .collect())
            }
        })
    }

    fn batches(&self) -> Vec<Vec<String>> {
        self.batches.lock().unwrap().clone()
    }
}

fn call(input: &str, deadline: Duration) -> (Call, CancellationToken) {
    let cancel = CancellationToken::new();
    let call = Call {
        invocation_id: 0,
        function_id: "embed".into(),
        input: Bytes::from(input.to_string()),
        deadline: std::time::Instant::now() + deadline,
        cancel: cancel.clone(),
    };
    (call, cancel)
}

fn sink() -> OutputSink {
    let (outbound, _) = mpsc::channel(1);
    OutputSink {
        invocation_id: 0,
        outbound: outbound.downgrade(),
        cancel: CancellationToken::new(),
    }
}

/// Submits `input` as a call and returns what its caller gets.
fn submit(batcher: &Arc<Batcher>, input: &str) -> JoinHandle<Result<Bytes, HandlerError>> {
    let (call, _cancel) = call(input, Duration::from_secs(60));
    tokio::spawn(batcher.call(call, sink()))
}

async fn answers(
    calls: Vec<JoinHandle<Result<Bytes, HandlerError>>>,
) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    for call in calls {
        out.push(
            call.await
                .unwrap()
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .map_err(|e| e.message().to_string()),
        );
    }
    out
}

/// Lets spawned tasks run without moving the paused clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_merge_up_to_max_size_and_split_back_in_order() {
    let recorder = Arc::new(Recorder::default());
    // Room for all ten calls at once: one batch running, six calls waiting.
    let policy = BatchPolicy::new(4)
        .max_wait(Duration::from_millis(5))
        .max_queue(6);
    let batcher = Batcher::new(policy, recorder.handler(Duration::from_millis(1)));
    let inputs: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let calls = inputs.iter().map(|i| submit(&batcher, i)).collect();
    let got = answers(calls).await;
    let expected: Vec<Result<String, String>> =
        inputs.iter().map(|i| Ok(i.to_uppercase())).collect();
    assert_eq!(got, expected, "every caller gets its own output");
    assert_eq!(
        recorder.batches(),
        vec![
            vec!["c0", "c1", "c2", "c3"],
            vec!["c4", "c5", "c6", "c7"],
            vec!["c8", "c9"]
        ],
        "3 handler calls for 10 calls, in arrival order, none above max_size"
    );
    let stats = batcher.stats();
    assert_eq!((stats.batches, stats.calls, stats.largest), (3, 10, 4));
}

#[tokio::test(start_paused = true)]
async fn a_lone_call_runs_once_max_wait_has_passed() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(8).max_wait(Duration::from_millis(20));
    let batcher = Batcher::new(policy, recorder.handler(Duration::ZERO));
    let started = Instant::now();
    let first = submit(&batcher, "a");
    tokio::time::sleep(Duration::from_millis(15)).await;
    settle().await;
    assert!(recorder.batches().is_empty(), "still waiting for company");
    let second = submit(&batcher, "b");
    assert_eq!(
        answers(vec![first, second]).await,
        vec![Ok("A".into()), Ok("B".into())]
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(20),
        "the wait counts from the first call"
    );
    assert_eq!(recorder.batches(), vec![vec!["a", "b"]]);

    // Zero wait: a batch takes what is queued at that moment.
    let recorder = Arc::new(Recorder::default());
    let batcher = Batcher::new(
        BatchPolicy::new(8).max_wait(Duration::ZERO),
        recorder.handler(Duration::ZERO),
    );
    let started = Instant::now();
    assert_eq!(
        answers(vec![submit(&batcher, "x")]).await,
        vec![Ok("X".into())]
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_does_not_wait() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(2).max_wait(Duration::from_secs(5));
    let batcher = Batcher::new(policy, recorder.handler(Duration::ZERO));
    let started = Instant::now();
    let calls = vec![submit(&batcher, "a"), submit(&batcher, "b")];
    answers(calls).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn one_bad_input_fails_alone_and_a_failed_batch_fails_each_call() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(3).max_wait(Duration::from_millis(1));
    let batcher = Batcher::new(policy, recorder.handler(Duration::ZERO));
    let calls = ["ok", "bad", "fine"]
        .iter()
        .map(|i| submit(&batcher, i))
        .collect();
    assert_eq!(
        answers(calls).await,
        vec![
            Ok("OK".into()),
            Err("cannot embed `bad`".into()),
            Ok("FINE".into())
        ]
    );

    let calls = ["a", "short"].iter().map(|i| submit(&batcher, i)).collect();
    let wrong = "the batch handler returned 0 outputs for a batch of 2 calls".to_string();
    assert_eq!(answers(calls).await, vec![Err(wrong.clone()), Err(wrong)]);

    let calls = ["panic", "b"].iter().map(|i| submit(&batcher, i)).collect();
    let panicked = "handler panicked: the model fell over".to_string();
    assert_eq!(
        answers(calls).await,
        vec![Err(panicked.clone()), Err(panicked)]
    );
    // The queue goes on after a panic.
    assert_eq!(
        answers(vec![submit(&batcher, "c")]).await,
        vec![Ok("C".into())]
    );
}

#[tokio::test(start_paused = true)]
async fn withdrawn_and_expired_calls_never_reach_the_handler() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(8).max_wait(Duration::from_millis(10));
    let batcher = Batcher::new(policy, recorder.handler(Duration::ZERO));
    let (gone, cancel) = call("gone", Duration::from_secs(60));
    let gone = tokio::spawn(batcher.call(gone, sink()));
    let (late, _) = call("late", Duration::ZERO);
    let late = tokio::spawn(batcher.call(late, sink()));
    let (dropped, _) = call("dropped", Duration::from_secs(60));
    let dropped = batcher.call(dropped, sink());
    let kept = submit(&batcher, "kept");
    settle().await;
    cancel.cancel();
    gone.abort();
    drop(dropped);
    assert_eq!(answers(vec![kept]).await, vec![Ok("KEPT".into())]);
    late.abort();
    assert_eq!(
        recorder.batches(),
        vec![vec!["kept"]],
        "each caller's deadline and cancellation hold inside the batch"
    );
    assert_eq!(batcher.stats().withdrawn_while_queued, 3);
}

#[tokio::test(start_paused = true)]
async fn a_running_batch_whose_callers_all_left_is_dropped() {
    let dropped = Arc::new(AtomicUsize::new(0));
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let seen = dropped.clone();
    let handler = batch_handler_fn(move |calls: Vec<Call>| {
        let guard = CountDrop(seen.clone());
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(calls.iter().map(|_| Ok(Bytes::new())).collect())
        }
    });
    let batcher = Batcher::new(
        BatchPolicy::new(2).max_wait(Duration::from_millis(1)),
        handler,
    );
    let (one, cancel_one) = call("1", Duration::from_secs(60));
    let (two, cancel_two) = call("2", Duration::from_secs(60));
    let one = tokio::spawn(batcher.call(one, sink()));
    let two = tokio::spawn(batcher.call(two, sink()));
    tokio::time::sleep(Duration::from_millis(5)).await;
    cancel_one.cancel();
    one.abort();
    settle().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "one caller still waits");
    cancel_two.cancel();
    two.abort();
    tokio::time::sleep(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "nobody waits: the batch stops"
    );
}

#[tokio::test(start_paused = true)]
async fn batches_respect_max_concurrency_and_fill_while_waiting_for_a_slot() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(4)
        .max_wait(Duration::from_millis(1))
        .max_concurrency(2);
    let batcher = Batcher::new(policy, recorder.handler(Duration::from_millis(50)));
    let mut calls = vec![submit(&batcher, "a0"), submit(&batcher, "a1")];
    tokio::time::sleep(Duration::from_millis(2)).await;
    calls.push(submit(&batcher, "b0"));
    tokio::time::sleep(Duration::from_millis(2)).await;
    // Both slots busy: these queue, and all join the next batch once a slot frees.
    for i in 0..6 {
        calls.push(submit(&batcher, &format!("c{i}")));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    answers(calls).await;
    assert_eq!(recorder.most_running.load(Ordering::SeqCst), 2);
    assert_eq!(
        recorder.batches(),
        vec![
            vec!["a0", "a1"],
            vec!["b0"],
            vec!["c0", "c1", "c2", "c3"],
            vec!["c4", "c5"]
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn functions_batch_separately() {
    let recorder = Arc::new(Recorder::default());
    let batcher = Batcher::new(BatchPolicy::new(8), recorder.handler(Duration::ZERO));
    let (mut other, _) = call("x", Duration::from_secs(60));
    other.function_id = "other".into();
    let calls = vec![
        submit(&batcher, "a"),
        tokio::spawn(batcher.call(other, sink())),
    ];
    answers(calls).await;
    let mut batches = recorder.batches();
    batches.sort();
    assert_eq!(batches, vec![vec!["a"], vec!["x"]]);
}

#[test]
fn policies_are_checked_and_size_the_registration() {
    assert!(BatchPolicy::new(32).validate().is_ok());
    assert_eq!(
        BatchPolicy::new(0).validate().unwrap_err().to_string(),
        "batch policy: max_size is 0, must be 1 to 1024"
    );
    assert_eq!(
        BatchPolicy::new(8)
            .max_concurrency(0)
            .validate()
            .unwrap_err()
            .field,
        "max_concurrency"
    );
    assert_eq!(
        BatchPolicy::new(8)
            .max_wait(Duration::from_secs(11))
            .validate()
            .unwrap_err()
            .field,
        "max_wait"
    );
    assert_eq!(
        BatchPolicy::new(8)
            .max_queue(4)
            .validate()
            .unwrap_err()
            .to_string(),
        "batch policy: max_queue is 4, must be 8 (max_size: a batch forms in the queue) to 65536"
    );
    assert_eq!(BatchPolicy::new(8).queue(), 8, "room for one full batch");
    // Two running batches of 256 and one waiting.
    assert_eq!(
        BatchPolicy::new(256).max_concurrency(2).calls_in_flight(),
        768
    );
    assert_eq!(BatchPolicy::new(16).max_queue(100).calls_in_flight(), 116);
    assert_eq!(
        BatchPolicy::new(1024).max_concurrency(4).calls_in_flight(),
        MAX_CALLS_IN_FLIGHT
    );
    let spec = FunctionSpec::new("embed").batched(&BatchPolicy::new(64).max_concurrency(2));
    assert_eq!(spec.max_concurrency, 192);
}

#[tokio::test]
async fn blocking_batch_handlers_run_off_the_runtime() {
    let handler = blocking_batch_handler_fn(|calls: Vec<Call>| {
        Ok(calls
            .iter()
            .map(|c| Ok(Bytes::from(c.input.len().to_string())))
            .collect())
    });
    let batcher = Batcher::new(BatchPolicy::new(4).max_wait(Duration::ZERO), handler);
    assert_eq!(
        answers(vec![submit(&batcher, "four")]).await,
        vec![Ok("4".into())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_fails_the_extra_call_at_once_and_takes_calls_again_once_it_drains() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(2)
        .max_wait(Duration::from_millis(1))
        .max_queue(3);
    let batcher = Batcher::new(policy, recorder.handler(Duration::from_millis(100)));
    // The first batch runs; three calls wait behind it, filling the capacity (2 + 3).
    let mut calls = vec![submit(&batcher, "r0"), submit(&batcher, "r1")];
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 0..3 {
        calls.push(submit(&batcher, &format!("q{i}")));
    }
    settle().await;
    let started = Instant::now();
    let refused = answers(vec![submit(&batcher, "extra")]).await;
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    assert_eq!(
        refused,
        vec![Err(
            "the batch queue of `embed` is full: it holds 5 calls (room for 1 x 2 \
                  running and max_queue 3 waiting); try again later"
                .into()
        )]
    );
    assert_eq!(
        answers(calls).await,
        ["R0", "R1", "Q0", "Q1", "Q2"]
            .map(|o| Ok(o.to_string()))
            .to_vec()
    );
    assert_eq!(
        recorder.batches(),
        vec![vec!["r0", "r1"], vec!["q0", "q1"], vec!["q2"]]
    );
    assert_eq!(
        answers(vec![submit(&batcher, "later")]).await,
        vec![Ok("LATER".into())],
        "the drained queue takes calls again"
    );
    assert_eq!(batcher.stats().rejected_queue_full, 1);
}

#[tokio::test(start_paused = true)]
async fn withdrawn_calls_give_their_queue_room_back() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(1).max_wait(Duration::ZERO).max_queue(1);
    let batcher = Batcher::new(policy, recorder.handler(Duration::from_millis(100)));
    let running = submit(&batcher, "running");
    settle().await;
    let (waiting, cancel) = call("withdrawn", Duration::from_secs(60));
    let waiting = tokio::spawn(batcher.call(waiting, sink()));
    settle().await;
    assert!(
        answers(vec![submit(&batcher, "refused")]).await[0].is_err(),
        "one call runs, one waits: the capacity is full"
    );
    cancel.cancel();
    waiting.abort();
    // The withdrawn call leaves the queue when the running batch frees the slot.
    assert_eq!(answers(vec![running]).await, vec![Ok("RUNNING".into())]);
    settle().await;
    assert_eq!(
        answers(vec![submit(&batcher, "next")]).await,
        vec![Ok("NEXT".into())]
    );
    assert_eq!(recorder.batches(), vec![vec!["running"], vec!["next"]]);
    let stats = batcher.stats();
    assert_eq!(
        (stats.withdrawn_while_queued, stats.rejected_queue_full),
        (1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_small_running_batch_leaves_its_room_to_waiting_calls() {
    let recorder = Arc::new(Recorder::default());
    let policy = BatchPolicy::new(4).max_wait(Duration::ZERO);
    let batcher = Batcher::new(policy, recorder.handler(Duration::from_millis(100)));
    assert_eq!(policy.capacity(), 8);
    let mut calls = vec![submit(&batcher, "alone")];
    settle().await;
    // One call runs, so seven may wait (a daemon registered with `calls_in_flight` sends
    // that many): none is refused.
    calls.extend((0..7).map(|i| submit(&batcher, &format!("w{i}"))));
    settle().await;
    let refused = answers(vec![submit(&batcher, "ninth")]).await;
    assert!(refused[0].as_ref().unwrap_err().contains("holds 8 calls"));
    assert!(answers(calls).await.iter().all(Result::is_ok));
    assert_eq!(
        recorder.batches(),
        vec![
            vec!["alone"],
            vec!["w0", "w1", "w2", "w3"],
            vec!["w4", "w5", "w6"]
        ]
    );
}
