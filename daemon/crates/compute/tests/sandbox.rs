//! End-to-end behaviour of the sandbox with the example modules in `tests/wasm/`.

use std::sync::Arc;
use std::time::Duration;

use mehr_compute::{
    DeployError, InvokeError, Limits, ModuleId, Runtime, RuntimeConfig, Tier, wat_to_wasm,
};
use proptest::prelude::*;

const ECHO: &str = include_str!("wasm/echo.wat");
const TEXT: &str = include_str!("wasm/text.wat");
const LOOPS: &str = include_str!("wasm/loops.wat");
const TRAPS: &str = include_str!("wasm/traps.wat");
const GROW: &str = include_str!("wasm/grow.wat");
const BAD_OUTPUT: &str = include_str!("wasm/bad_output.wat");
const BAD_ALLOC: &str = include_str!("wasm/bad_alloc.wat");
const STATE: &str = include_str!("wasm/state.wat");
const IMPORT: &str = include_str!("wasm/import.wat");

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_concurrent_calls: 16,
        epoch_tick: Duration::from_millis(5),
        ..RuntimeConfig::default()
    })
    .expect("runtime starts")
}

fn wasm(text: &str) -> Vec<u8> {
    wat_to_wasm(text).expect("example WAT parses")
}

fn deploy(runtime: &Runtime, text: &str) -> ModuleId {
    runtime.deploy(&wasm(text)).expect("example module deploys")
}

fn light() -> Limits {
    Tier::Light.limits()
}

/// After a failure, a good call on the same runtime must still succeed.
fn assert_healthy(runtime: &Runtime) {
    let echo = deploy(runtime, ECHO);
    let output = runtime
        .invoke(&echo, "echo", b"still fine", &light())
        .expect("runtime is healthy after a failure");
    assert_eq!(output.bytes, b"still fine");
}

#[test]
fn echo_returns_its_input_and_reports_fuel() {
    let runtime = runtime();
    let echo = deploy(&runtime, ECHO);
    let input: Vec<u8> = (0..64).collect();
    let output = runtime.invoke(&echo, "echo", &input, &light()).unwrap();
    assert_eq!(output.bytes, input);
    assert!(output.fuel_used > 0);
    assert!(output.fuel_used < 1_000);

    let empty = runtime.invoke(&echo, "echo", b"", &light()).unwrap();
    assert!(empty.bytes.is_empty());
}

#[test]
fn text_functions_compute_what_they_say() {
    let runtime = runtime();
    let text = deploy(&runtime, TEXT);
    assert_eq!(
        runtime.functions(&text).unwrap(),
        ["reverse", "sum", "uppercase", "word_count"]
    );
    let call = |function: &str, input: &[u8]| {
        runtime
            .invoke(&text, function, input, &light())
            .unwrap()
            .bytes
    };
    assert_eq!(call("reverse", b"mehr"), b"rhem");
    assert_eq!(
        call("uppercase", b"Hello, mesh! z{a`"),
        b"HELLO, MESH! Z{A`"
    );
    assert_eq!(
        call("word_count", b"  a mesh\tof\n\rnodes  "),
        4u32.to_le_bytes()
    );
    assert_eq!(call("word_count", b""), 0u32.to_le_bytes());
    assert_eq!(call("sum", &[200, 100, 1]), 301u64.to_le_bytes());
}

#[test]
fn deploy_is_content_addressed_and_idempotent() {
    let runtime = runtime();
    let bytes = wasm(ECHO);
    let id = runtime.deploy(&bytes).unwrap();
    assert_eq!(id, ModuleId::of_wasm(&bytes));
    assert_eq!(id.to_string().parse::<ModuleId>().unwrap(), id);
    assert_eq!(runtime.deploy(&bytes).unwrap(), id);
    assert_eq!(runtime.module_count(), 1);
    assert!(runtime.contains(&id));
    assert_eq!(runtime.functions(&id).unwrap(), ["echo"]);

    assert!(runtime.remove(&id));
    assert!(!runtime.remove(&id));
    assert_eq!(
        runtime.invoke(&id, "echo", b"", &light()),
        Err(InvokeError::UnknownModule { id })
    );
    assert_eq!(runtime.functions(&id), None);
}

#[test]
fn modules_that_import_anything_are_rejected() {
    let runtime = runtime();
    assert_eq!(
        runtime.deploy(&wasm(IMPORT)),
        Err(DeployError::ForbiddenImport {
            module: "env".into(),
            name: "log".into()
        })
    );
    let wasi = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert!(matches!(
        runtime.deploy(&wasm(wasi)),
        Err(DeployError::ForbiddenImport { module, .. }) if module == "wasi_snapshot_preview1"
    ));
    let imported_memory = r#"(module
        (import "env" "memory" (memory 1))
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert!(matches!(
        runtime.deploy(&wasm(imported_memory)),
        Err(DeployError::ForbiddenImport { .. })
    ));
    assert_eq!(runtime.module_count(), 0);
}

#[test]
fn modules_without_the_abi_are_rejected() {
    let runtime = runtime();
    let no_memory = r#"(module
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert_eq!(
        runtime.deploy(&wasm(no_memory)),
        Err(DeployError::MissingExport {
            name: "memory".into()
        })
    );
    let no_alloc = r#"(module
        (memory (export "memory") 1)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert_eq!(
        runtime.deploy(&wasm(no_alloc)),
        Err(DeployError::MissingExport {
            name: "mehr_alloc".into()
        })
    );
    let wrong_alloc = r#"(module
        (memory (export "memory") 1)
        (func (export "mehr_alloc") (param i64) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert!(matches!(
        runtime.deploy(&wasm(wrong_alloc)),
        Err(DeployError::WrongExportType { name, found, .. })
            if name == "mehr_alloc" && found.contains("i64")
    ));
    let memory_is_a_global = r#"(module
        (global (export "memory") i32 (i32.const 0))
        (memory 1)
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert!(matches!(
        runtime.deploy(&wasm(memory_is_a_global)),
        Err(DeployError::WrongExportType { name, found, .. })
            if name == "memory" && found == "global"
    ));
    let no_functions = r#"(module
        (memory (export "memory") 1)
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "wrong_shape") (param i32) (result i64) i64.const 0))"#;
    assert_eq!(
        runtime.deploy(&wasm(no_functions)),
        Err(DeployError::NoFunctions)
    );
}

#[test]
fn bad_bytes_and_oversized_modules_are_rejected() {
    let runtime = runtime();
    assert_eq!(
        runtime.deploy(ECHO.as_bytes()),
        Err(DeployError::NotWasmBinary)
    );
    assert_eq!(runtime.deploy(b""), Err(DeployError::NotWasmBinary));
    assert!(matches!(
        runtime.deploy(b"\0asm\x01\0\0\0\x01\xff"),
        Err(DeployError::InvalidModule { .. })
    ));
    let oversized = vec![0u8; runtime.config().max_module_bytes + 1];
    assert_eq!(
        runtime.deploy(&oversized),
        Err(DeployError::TooLarge {
            size: oversized.len(),
            limit: runtime.config().max_module_bytes
        })
    );
    assert!(matches!(
        wat_to_wasm("(module"),
        Err(DeployError::InvalidWat { .. })
    ));
}

#[test]
fn modules_declaring_more_memory_than_the_ceiling_are_rejected() {
    let runtime = runtime();
    // 4097 pages of 64 KiB is one page above the 256 MiB Full-tier ceiling.
    let huge = r#"(module
        (memory (export "memory") 4097)
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert_eq!(
        runtime.deploy(&wasm(huge)),
        Err(DeployError::MemoryTooLarge {
            declared_bytes: 4097 * 65536,
            limit: 256 * 1024 * 1024
        })
    );
    // A large declared maximum is only a cap, not a demand: it is accepted.
    let large_maximum = r#"(module
        (memory (export "memory") 1 65536)
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    assert!(runtime.deploy(&wasm(large_maximum)).is_ok());
}

#[test]
fn unknown_function_and_allocator_are_not_callable() {
    let runtime = runtime();
    let echo = deploy(&runtime, ECHO);
    for name in ["nope", "mehr_alloc", "memory", ""] {
        assert_eq!(
            runtime.invoke(&echo, name, b"", &light()),
            Err(InvokeError::UnknownFunction { name: name.into() })
        );
    }
    assert_healthy(&runtime);
}

#[test]
fn limits_above_the_ceiling_are_refused() {
    let runtime = Runtime::new(RuntimeConfig {
        ceilings: Tier::Light.limits(),
        max_concurrent_calls: 4,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let echo = deploy(&runtime, ECHO);
    assert_eq!(
        runtime.invoke(&echo, "echo", b"", &Tier::Full.limits()),
        Err(InvokeError::LimitAboveCeiling {
            field: "fuel",
            requested: 10_000_000_000,
            ceiling: 100_000_000
        })
    );
    let long = Limits {
        deadline: Duration::from_secs(6),
        ..light()
    };
    assert!(matches!(
        runtime.invoke(&echo, "echo", b"", &long),
        Err(InvokeError::LimitAboveCeiling {
            field: "deadline_ns",
            ..
        })
    ));
    assert_healthy(&runtime);
}

#[test]
fn input_over_the_limit_is_refused_before_running() {
    let runtime = runtime();
    let echo = deploy(&runtime, ECHO);
    let limits = Limits {
        max_input_bytes: 8,
        ..light()
    };
    assert_eq!(
        runtime.invoke(&echo, "echo", &[0; 9], &limits),
        Err(InvokeError::InputTooLarge { len: 9, limit: 8 })
    );
    assert_eq!(
        runtime
            .invoke(&echo, "echo", &[7; 8], &limits)
            .unwrap()
            .bytes,
        [7; 8]
    );
    assert_healthy(&runtime);
}

#[test]
fn fuel_is_exact_deterministic_and_enforced() {
    let runtime = runtime();
    let loops = deploy(&runtime, LOOPS);
    let burn = |iterations: u32, fuel: u64| {
        runtime.invoke(
            &loops,
            "burn",
            &iterations.to_le_bytes(),
            &Limits { fuel, ..light() },
        )
    };
    let small = burn(1_000, 100_000_000).unwrap().fuel_used;
    assert_eq!(burn(1_000, 100_000_000).unwrap().fuel_used, small);
    let large = burn(2_000, 100_000_000).unwrap().fuel_used;
    assert!(
        large > small + 1_000,
        "fuel grows with work: {small} {large}"
    );

    // The fuel used is enough to run again; clearly less is not. (Wasmtime checks fuel at
    // function entries and loop headers, so a short straight-line tail may run past the limit
    // uncharged: the boundary is not exact to the operator.)
    assert_eq!(burn(1_000, small).unwrap().fuel_used, small);
    assert_eq!(
        burn(1_000, small - 100),
        Err(InvokeError::OutOfFuel { limit: small - 100 })
    );
    for fuel in [small - 20, small - 1] {
        match burn(1_000, fuel) {
            Ok(output) => assert!(output.fuel_used <= fuel),
            Err(err) => assert_eq!(err, InvokeError::OutOfFuel { limit: fuel }),
        }
    }

    let spin = runtime.invoke(
        &loops,
        "spin",
        b"",
        &Limits {
            fuel: 1_000_000,
            ..light()
        },
    );
    assert_eq!(spin, Err(InvokeError::OutOfFuel { limit: 1_000_000 }));
    assert_eq!(spin.unwrap_err().fuel_used(), 1_000_000);
    assert_healthy(&runtime);
}

#[test]
fn deadline_interrupts_an_endless_loop() {
    let runtime = runtime();
    let loops = deploy(&runtime, LOOPS);
    let deadline = Duration::from_millis(100);
    let limits = Limits {
        fuel: Tier::Full.limits().fuel,
        deadline,
        ..light()
    };
    match runtime.invoke(&loops, "spin", b"", &limits) {
        Err(InvokeError::Deadline { elapsed, fuel_used }) => {
            assert!(elapsed >= deadline, "interrupted early, after {elapsed:?}");
            assert!(fuel_used > 0);
        }
        other => panic!("expected a deadline error, got {other:?}"),
    }
    assert_healthy(&runtime);
}

#[test]
fn traps_are_reported_with_their_cause() {
    let runtime = runtime();
    let traps = deploy(&runtime, TRAPS);
    let cases = [
        ("unreachable", &b"x"[..], "unreachable"),
        ("divide_by_len", &b""[..], "divide by zero"),
        ("recurse", &b""[..], "call stack exhausted"),
        ("out_of_bounds_load", &b""[..], "out of bounds"),
    ];
    for (function, input, cause) in cases {
        match runtime.invoke(&traps, function, input, &light()) {
            Err(InvokeError::Trap { message, fuel_used }) => {
                assert!(
                    message.contains(cause),
                    "{function}: `{message}` lacks `{cause}`"
                );
                assert!(fuel_used > 0);
            }
            other => panic!("{function}: expected a trap, got {other:?}"),
        }
        assert_healthy(&runtime);
    }
    // The same function succeeds when it does not trap: 100 / 4 = 25, read as (ptr 0, len 25).
    let fine = runtime
        .invoke(&traps, "divide_by_len", b"abcd", &light())
        .unwrap();
    assert_eq!(fine.bytes.len(), 25);
}

#[test]
fn memory_limit_stops_unbounded_growth() {
    let runtime = runtime();
    let grow = deploy(&runtime, GROW);
    let limits = Limits {
        memory_bytes: 2 * 1024 * 1024,
        ..light()
    };
    assert!(matches!(
        runtime.invoke(&grow, "grow_forever", b"", &limits),
        Err(InvokeError::MemoryLimit { limit, fuel_used }) if limit == 2 * 1024 * 1024 && fuel_used > 0
    ));
    assert_healthy(&runtime);

    // A guest that handles the refusal gets exactly the limit and answers normally.
    let pages = runtime
        .invoke(&grow, "grow_until_refused", b"", &limits)
        .unwrap()
        .bytes;
    assert_eq!(pages, 32u32.to_le_bytes());
}

#[test]
fn initial_memory_above_the_call_limit_is_a_memory_limit_error() {
    let runtime = runtime();
    // 2 MiB of initial memory: under the runtime ceiling, over this call's limit.
    let big = r#"(module
        (memory (export "memory") 32)
        (func (export "mehr_alloc") (param i32) (result i32) i32.const 0)
        (func (export "f") (param i32 i32) (result i64) i64.const 0))"#;
    let module = deploy(&runtime, big);
    let limits = Limits {
        memory_bytes: 1024 * 1024,
        ..light()
    };
    assert_eq!(
        runtime.invoke(&module, "f", b"", &limits),
        Err(InvokeError::MemoryLimit {
            limit: 1024 * 1024,
            fuel_used: 0
        })
    );
    assert!(runtime.invoke(&module, "f", b"", &light()).is_ok());
}

#[test]
fn bad_output_regions_are_refused() {
    let runtime = runtime();
    let bad = deploy(&runtime, BAD_OUTPUT);
    assert!(matches!(
        runtime.invoke(&bad, "far_pointer", b"", &light()),
        Err(InvokeError::BadOutputPointer {
            ptr: 0xFFFF_0000,
            len: 16,
            memory_size: 65536,
            ..
        })
    ));
    assert_healthy(&runtime);
    assert!(matches!(
        runtime.invoke(&bad, "straddling", b"", &light()),
        Err(InvokeError::BadOutputPointer {
            ptr: 65528,
            len: 16,
            ..
        })
    ));
    assert_healthy(&runtime);
    assert!(matches!(
        runtime.invoke(&bad, "huge_length", b"", &light()),
        Err(InvokeError::OutputTooLarge { len: u32::MAX, limit, fuel_used })
            if limit == light().max_output_bytes && fuel_used > 0
    ));
    assert_healthy(&runtime);

    let echo = deploy(&runtime, ECHO);
    let limits = Limits {
        max_output_bytes: 3,
        ..light()
    };
    assert!(matches!(
        runtime.invoke(&echo, "echo", b"four", &limits),
        Err(InvokeError::OutputTooLarge {
            len: 4,
            limit: 3,
            ..
        })
    ));
    assert_eq!(
        runtime
            .invoke(&echo, "echo", b"thr", &limits)
            .unwrap()
            .bytes,
        b"thr"
    );
}

#[test]
fn allocator_returning_a_bad_pointer_is_refused() {
    let runtime = runtime();
    let bad = deploy(&runtime, BAD_ALLOC);
    assert!(matches!(
        runtime.invoke(&bad, "echo", b"input", &light()),
        Err(InvokeError::BadInputPointer {
            ptr: 0xFFFF_FFF0,
            len: 5,
            memory_size: 65536,
            ..
        })
    ));
    assert_healthy(&runtime);
}

#[test]
fn calls_do_not_share_state() {
    let runtime = runtime();
    let state = deploy(&runtime, STATE);
    for _ in 0..5 {
        let output = runtime.invoke(&state, "bump", b"", &light()).unwrap();
        let mut expected = 1u32.to_le_bytes().to_vec();
        expected.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(output.bytes, expected);
    }
}

#[test]
fn many_threads_call_at_once() {
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            max_concurrent_calls: 64,
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let text = deploy(&runtime, TEXT);
    let loops = deploy(&runtime, LOOPS);
    let threads: Vec<_> = (0..8u8)
        .map(|thread| {
            let runtime = Arc::clone(&runtime);
            std::thread::spawn(move || {
                for round in 0..200u32 {
                    let input: Vec<u8> = format!("thread {thread} round {round}").into_bytes();
                    let output = runtime.invoke(&text, "reverse", &input, &light()).unwrap();
                    let mut expected = input.clone();
                    expected.reverse();
                    assert_eq!(output.bytes, expected);
                    // Interleave failing calls: they must not disturb the others.
                    if round % 50 == 0 {
                        let spin = runtime.invoke(
                            &loops,
                            "spin",
                            b"",
                            &Limits {
                                fuel: 100_000,
                                ..light()
                            },
                        );
                        assert_eq!(spin, Err(InvokeError::OutOfFuel { limit: 100_000 }));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("worker thread did not panic");
    }
}

#[test]
fn a_full_instance_pool_answers_busy() {
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            max_concurrent_calls: 1,
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let loops = deploy(&runtime, LOOPS);
    let echo = deploy(&runtime, ECHO);
    let spin = || {
        let runtime = Arc::clone(&runtime);
        std::thread::spawn(move || {
            let limits = Limits {
                fuel: Tier::Full.limits().fuel,
                deadline: Duration::from_secs(2),
                ..light()
            };
            runtime.invoke(&loops, "spin", b"", &limits)
        })
    };
    // The probe below may take the single slot before the spinner does; then the spinner is
    // the one told busy, and it is started again.
    let mut saw_busy = false;
    let mut spinner = spin();
    for _ in 0..5 {
        while !spinner.is_finished() {
            match runtime.invoke(&echo, "echo", b"", &light()) {
                Err(InvokeError::Busy { capacity: 1 }) => {
                    saw_busy = true;
                    break;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        if saw_busy {
            break;
        }
        assert!(matches!(
            spinner.join().unwrap(),
            Err(InvokeError::Busy { capacity: 1 })
        ));
        spinner = spin();
    }
    assert!(saw_busy, "the single slot was never seen busy");
    assert!(matches!(
        spinner.join().unwrap(),
        Err(InvokeError::Deadline { .. })
    ));
    assert_healthy(&runtime);
}

#[test]
fn compiled_modules_survive_a_restart_through_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().join("wasm-cache")),
        max_concurrent_calls: 4,
        ..RuntimeConfig::default()
    };
    let bytes = wasm(TEXT);
    {
        let first = Runtime::new(config.clone()).unwrap();
        first.deploy(&bytes).unwrap();
        let stats = first.cache_stats().unwrap();
        assert_eq!((stats.hits, stats.misses), (0, 1));
    }
    let second = Runtime::new(config).unwrap();
    let id = second.deploy(&bytes).unwrap();
    let stats = second.cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses), (1, 0));
    assert_eq!(
        second
            .invoke(&id, "reverse", b"abc", &light())
            .unwrap()
            .bytes,
        b"cba"
    );
    assert_eq!(runtime().cache_stats(), None);
}

fn word_count(input: &[u8]) -> u32 {
    input
        .split(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
        .filter(|word| !word.is_empty())
        .count() as u32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn deploying_random_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        with_magic in any::<bool>(),
    ) {
        let runtime = runtime();
        let mut module = if with_magic { b"\0asm\x01\0\0\0".to_vec() } else { Vec::new() };
        module.extend_from_slice(&bytes);
        prop_assert!(runtime.deploy(&module).is_err());
    }

    #[test]
    fn text_functions_match_the_rust_reference(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let runtime = runtime();
        let text = deploy(&runtime, TEXT);
        let echo = deploy(&runtime, ECHO);
        let call = |module: &ModuleId, function: &str| {
            runtime.invoke(module, function, &input, &light()).unwrap().bytes
        };
        prop_assert_eq!(call(&echo, "echo"), input.clone());
        let mut reversed = input.clone();
        reversed.reverse();
        prop_assert_eq!(call(&text, "reverse"), reversed);
        prop_assert_eq!(call(&text, "uppercase"), input.to_ascii_uppercase());
        prop_assert_eq!(call(&text, "word_count"), word_count(&input).to_le_bytes().to_vec());
        let sum: u64 = input.iter().map(|&byte| u64::from(byte)).sum();
        prop_assert_eq!(call(&text, "sum"), sum.to_le_bytes().to_vec());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any limits under the ceiling give either the right answer or a typed error, and the
    /// runtime stays usable.
    #[test]
    fn arbitrary_limits_give_the_answer_or_a_typed_error(
        input in proptest::collection::vec(any::<u8>(), 0..300),
        fuel in 0u64..20_000,
        memory_bytes in 0u64..(3 * 65536),
        deadline_us in 0u64..20_000,
        max_input_bytes in 0u32..400,
        max_output_bytes in 0u32..400,
    ) {
        let runtime = runtime();
        let text = deploy(&runtime, TEXT);
        let limits = Limits {
            fuel,
            memory_bytes,
            deadline: Duration::from_micros(deadline_us),
            max_input_bytes,
            max_output_bytes,
        };
        match runtime.invoke(&text, "reverse", &input, &limits) {
            Ok(output) => {
                let mut reversed = input.clone();
                reversed.reverse();
                prop_assert_eq!(output.bytes, reversed);
                prop_assert!(output.fuel_used <= fuel);
            }
            Err(InvokeError::InputTooLarge { len, limit }) => {
                prop_assert_eq!((len, limit), (input.len(), max_input_bytes));
                prop_assert!(input.len() > max_input_bytes as usize);
            }
            Err(InvokeError::OutputTooLarge { len, limit, .. }) => {
                prop_assert_eq!(len as usize, input.len());
                prop_assert!(len > limit);
            }
            Err(InvokeError::OutOfFuel { limit }) => prop_assert_eq!(limit, fuel),
            Err(InvokeError::MemoryLimit { limit, .. }) => prop_assert_eq!(limit, memory_bytes),
            Err(InvokeError::Deadline { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
        assert_healthy(&runtime);
    }
}

/// `tests/wasm/guest_rust.wasm` is `examples/guest-rust` built with rustc for
/// wasm32-unknown-unknown: a real toolchain's output (std allocator, data segments, 17 pages of
/// initial memory) follows the ABI.
#[test]
fn a_rust_guest_runs() {
    let runtime = runtime();
    let guest = runtime
        .deploy(include_bytes!("wasm/guest_rust.wasm"))
        .expect("the Rust guest deploys");
    assert_eq!(
        runtime.functions(&guest).unwrap(),
        ["invert", "word_frequencies"]
    );
    let output = runtime
        .invoke(
            &guest,
            "word_frequencies",
            b"the mesh routes the packets; The mesh pays",
            &light(),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(output.bytes).unwrap(),
        "the 3\nmesh 2\npackets 1\npays 1\nroutes 1\n"
    );
    assert_eq!(
        runtime
            .invoke(&guest, "invert", &[0x0f, 0xff], &light())
            .unwrap()
            .bytes,
        [0xf0, 0x00]
    );
    // A Rust panic aborts, which the host sees as a trap.
    assert!(matches!(
        runtime.invoke(&guest, "invert", b"", &light()),
        Err(InvokeError::Trap { message, .. }) if message.contains("unreachable")
    ));
    assert_healthy(&runtime);
}
