//! Python bindings of the Mehr SDK: the native module `mehr._native`, wrapped by the Python
//! package `mehr` (see `python/mehr`). The Rust SDK (`mehr-sdk`) does the work; this crate
//! moves values across the language boundary, runs the SDK's futures for blocking and asyncio
//! callers, runs Python handlers for served functions, and guards against `fork()`.

mod args;
mod bridge;
mod client;
mod failure;
mod runtime;
mod serving;
mod streams;
mod values;

use pyo3::prelude::*;

/// The native part of the `mehr` package; import `mehr` instead.
#[pymodule(name = "_native")]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    client::register(module)?;
    serving::register(module)?;
    streams::register(module)?;
    values::register(module)?;
    Ok(())
}
