//! Deploys a module and invokes one of its functions, printing the output and the fuel used.
//!
//! ```text
//! cargo run --release -p mehr-compute --example invoke -- MODULE FUNCTION [INPUT]
//! ```
//! MODULE is a `.wasm` binary or `.wat` text file. INPUT is taken literally, or read from a
//! file when written `@path`; it is empty when omitted. Runs under the Light tier.

use std::process::ExitCode;

use mehr_compute::{Runtime, RuntimeConfig, Tier, wat_to_wasm};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: invoke MODULE FUNCTION [INPUT | @FILE]";
    let module_path = args.next().ok_or(usage)?;
    let function = args.next().ok_or(usage)?;
    let input = match args.next() {
        None => Vec::new(),
        Some(arg) => match arg.strip_prefix('@') {
            Some(path) => std::fs::read(path).map_err(|err| format!("{path}: {err}"))?,
            None => arg.into_bytes(),
        },
    };

    let bytes = std::fs::read(&module_path).map_err(|err| format!("{module_path}: {err}"))?;
    let wasm = if module_path.ends_with(".wat") {
        let text = String::from_utf8(bytes).map_err(|err| format!("{module_path}: {err}"))?;
        wat_to_wasm(&text).map_err(|err| err.to_string())?
    } else {
        bytes
    };

    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|err| err.to_string())?;
    let module = runtime.deploy(&wasm).map_err(|err| err.to_string())?;
    let functions = runtime.functions(&module).unwrap_or_default();
    eprintln!("module {module}, functions: {}", functions.join(", "));
    let output = runtime
        .invoke(&module, &function, &input, &Tier::Light.limits())
        .map_err(|err| format!("{err} (fuel used: {})", err.fuel_used()))?;
    eprintln!("fuel used: {}", output.fuel_used);
    println!("{}", String::from_utf8_lossy(&output.bytes));
    Ok(())
}
