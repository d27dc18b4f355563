//! The bodies of Mehr's fuzz targets, as plain functions over bytes.
//!
//! Each target decodes what a hostile peer (or a corrupted store) could hand the node and,
//! where the decoder has an encoder, checks round-trip and consistency properties, so the
//! fuzzer finds logic bugs as well as panics. A property that fails panics, which libFuzzer
//! reports as a crash.
//!
//! Two callers share these functions and so cannot drift apart: the libFuzzer binaries in
//! `fuzz/libfuzzer/fuzz_targets/` (one line each) and the replay test `tests/replay.rs`, which runs
//! every committed corpus file and every kept crash through them on stable Rust in CI.
//! [`TARGETS`] is the list both use; `fuzz/README.md` says how to add one.

pub mod ledger;
pub mod market;
mod router;
pub mod seeds;
pub mod storage;
pub mod transport;

/// A fuzz target: its name (the cargo-fuzz binary and its corpus directory) and its body.
#[derive(Clone, Copy)]
pub struct Target {
    /// Name of the `fuzz/libfuzzer/fuzz_targets/<name>.rs` binary and of `fuzz/corpus/<name>/`.
    pub name: &'static str,
    /// The body: any input is allowed; a panic is a finding.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "packet",
        run: transport::packet,
    },
    Target {
        name: "announce",
        run: transport::announce,
    },
    Target {
        name: "mehr_extension",
        run: transport::mehr_extension,
    },
    Target {
        name: "path_cost",
        run: transport::path_cost,
    },
    Target {
        name: "path_request",
        run: transport::path_request,
    },
    Target {
        name: "proof",
        run: transport::proof,
    },
    Target {
        name: "link_handshake",
        run: transport::link_handshake,
    },
    Target {
        name: "link_data",
        run: transport::link_data,
    },
    Target {
        name: "segments",
        run: transport::segments,
    },
    Target {
        name: "token",
        run: transport::token,
    },
    Target {
        name: "hdlc",
        run: transport::hdlc,
    },
    Target {
        name: "kiss",
        run: transport::kiss,
    },
    Target {
        name: "router",
        run: transport::router,
    },
    Target {
        name: "channel_message",
        run: ledger::channel_message,
    },
    Target {
        name: "ledger_record",
        run: ledger::ledger_record,
    },
    Target {
        name: "market_message",
        run: market::market_message,
    },
    Target {
        name: "market_control",
        run: market::market_control,
    },
    Target {
        name: "capability_advert",
        run: market::capability_advert,
    },
    Target {
        name: "beacon",
        run: market::beacon,
    },
    Target {
        name: "agreement_store",
        run: market::agreement_store,
    },
    Target {
        name: "storage_proof",
        run: storage::storage_proof,
    },
    Target {
        name: "erasure_manifest",
        run: storage::erasure_manifest,
    },
    Target {
        name: "erasure_pieces",
        run: storage::erasure_pieces,
    },
    Target {
        name: "storage_remote",
        run: storage::storage_remote,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
