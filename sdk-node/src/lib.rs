//! Node.js bindings of the Mehr SDK (napi-rs 3): the native addon `mehr.<platform>.node`,
//! wrapped by the TypeScript-facing package in `sdk-node/lib` (see the README). The Rust SDK
//! (`mehr-sdk`) does the work; this crate moves values across the boundary, runs the SDK's
//! futures on napi's tokio runtime (every I/O method returns a Promise) and delivers served
//! calls to JavaScript through weak thread-safe functions.

// napi-rs' generated glue registers classes and functions with `unsafe` FFI code.
#![allow(unsafe_code)]
// napi-derive generates items the `missing_docs`/`unreachable_pub` lints cannot see through.
#![allow(missing_docs, unreachable_pub)]
// Exports are reached only through napi's registration, which a test build does not see.
#![cfg_attr(test, allow(dead_code))]

mod cancel;
mod client;
mod compute;
mod event_detail;
mod failure;
mod ledger;
mod market;
mod storage;
mod streams;
mod values;
