//! Replays every committed corpus file and every kept crash through its target, on stable
//! Rust and without libFuzzer, so CI fails if a fixed bug comes back or a corpus input starts
//! to break a property. Also checks that the libFuzzer binaries, the corpora and the target
//! list name the same targets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mehr_fuzz_targets::{TARGETS, seeds, target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/targets has a parent")
        .to_path_buf()
}

/// Files directly in `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn subdirectories(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().expect("named").to_string_lossy().into_owned())
        .collect()
}

/// Runs every file under `fuzz/<kind>/<target>/`; returns how many ran.
fn replay(kind: &str) -> usize {
    let root = fuzz_dir().join(kind);
    for name in subdirectories(&root) {
        assert!(
            target(&name).is_some(),
            "fuzz/{kind}/{name} belongs to no target in TARGETS"
        );
    }
    let mut ran = 0;
    for t in TARGETS {
        for file in files(&root.join(t.name)) {
            let input = std::fs::read(&file).expect("readable input");
            let outcome = std::panic::catch_unwind(|| (t.run)(&input));
            assert!(outcome.is_ok(), "{} failed on {}", t.name, file.display());
            ran += 1;
        }
    }
    ran
}

#[test]
fn every_corpus_input_passes() {
    let ran = replay("corpus");
    for t in TARGETS {
        assert!(
            !files(&fuzz_dir().join("corpus").join(t.name)).is_empty(),
            "fuzz/corpus/{} is empty: run the target and commit its minimized corpus",
            t.name
        );
    }
    println!("replayed {ran} corpus inputs");
}

#[test]
fn every_kept_crash_stays_fixed() {
    let ran = replay("regressions");
    println!("replayed {ran} crash inputs");
}

#[test]
fn every_seed_passes() {
    for (name, inputs) in seeds::all() {
        let t = target(name).unwrap_or_else(|| panic!("seeds for unknown target {name}"));
        assert!(!inputs.is_empty(), "no seeds for {name}");
        for input in inputs {
            (t.run)(&input);
        }
    }
}

#[test]
fn binaries_and_targets_agree() {
    let binaries: BTreeSet<String> = files(&fuzz_dir().join("libfuzzer/fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let names: BTreeSet<String> = TARGETS.iter().map(|t| t.name.to_owned()).collect();
    assert_eq!(
        binaries, names,
        "fuzz/libfuzzer/fuzz_targets/*.rs and TARGETS differ"
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("libfuzzer/Cargo.toml"))
        .expect("fuzz/libfuzzer/Cargo.toml");
    for t in TARGETS {
        let body = std::fs::read_to_string(
            fuzz_dir()
                .join("libfuzzer/fuzz_targets")
                .join(format!("{}.rs", t.name)),
        )
        .expect("readable binary source");
        assert!(
            body.contains(&format!("::{}(data)", t.name)),
            "fuzz_targets/{}.rs must run its own target",
            t.name
        );
        assert!(
            manifest.contains(&format!("name = \"{}\"", t.name)),
            "fuzz/libfuzzer/Cargo.toml has no [[bin]] for {}",
            t.name
        );
    }
}
