//! The layer rule of the daemon's modules (docs/ARCHITECTURE.md, "Layers"), checked by reading
//! every `crate::` path in `daemon/src`.
//!
//! A module may name modules of a lower layer. Within the foundation, modules may name each
//! other as long as no circle forms; the parts (ledger, market, storage, compute) never name
//! each other — they meet through the contracts in `crate::seams`, wired by `node`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// The layers, lowest first. Every top-level module of `daemon/src` is in exactly one.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "config",
            "data_dir",
            "events",
            "identity",
            "seams",
            "store",
            "telemetry",
        ],
    ),
    ("mesh", &["transport"]),
    ("parts", &["compute", "ledger", "market", "storage"]),
    ("api", &["api", "cli"]),
    ("assembly", &["devnet", "node"]),
];

/// Layers whose modules may name each other (the graph among them must still be acyclic).
const OPEN_LAYERS: &[&str] = &["foundation"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The source with comments, string literals and char literals blanked out, so that only code
/// is searched for `crate::`.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && is_raw_string(&chars, i) {
            let mut hashes = 0;
            i += 1;
            while chars[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1; // the opening quote
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&h| h == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&chars, i) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_raw_string(chars: &[char], i: usize) -> bool {
    // `r"…"` or `r#"…"#`, not an identifier that ends in r.
    let starts_token = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    starts_token && chars.get(j) == Some(&'"')
}

fn is_char_literal(chars: &[char], i: usize) -> bool {
    // `'x'` and `'\n'` are chars; `'a` (no closing quote right after) is a lifetime.
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// The first segment of every path that starts with `crate::`, groups (`crate::{a, b::c}`)
/// expanded.
fn crate_modules_named(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `mehr_crate::`, `$crate::`
        }
        let rest_trimmed = rest.trim_start();
        if let Some(group) = rest_trimmed.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = k;
                    break;
                }
            }
            let mut item_depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => item_depth += 1,
                    '}' => item_depth -= 1,
                    ',' if item_depth == 0 => {
                        named.insert(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            named.insert(first_segment(rest_trimmed));
        }
    }
    named.remove("");
    named.remove("self");
    named
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read daemon/src") {
            let path = entry.expect("read daemon/src").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The top-level module a file of `daemon/src` belongs to; `None` for the crate root and the
/// binaries (separate crates that use the library by its name).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "bin" => None,
        name => Some(name.trim_end_matches(".rs").to_string()),
    }
}

/// What `module` (in `file`) may not name, with the reason; empty when all is well.
fn violations(module: &str, file: &str, named: &BTreeSet<String>) -> Vec<String> {
    let Some(own) = layer_of(module) else {
        return vec![format!(
            "{file}: module `{module}` is in no layer: add it to LAYERS in daemon/tests/layers.rs \
             and to the drawing in docs/ARCHITECTURE.md"
        )];
    };
    let mut found = Vec::new();
    for other in named.iter().filter(|other| *other != module) {
        let Some(theirs) = layer_of(other) else {
            continue; // a crate-root item, not a module
        };
        let (own_name, _) = LAYERS[own];
        let (their_name, _) = LAYERS[theirs];
        if theirs > own {
            found.push(format!(
                "{file}: `{module}` ({own_name}) names `crate::{other}` ({their_name}), a \
                 higher layer"
            ));
        } else if theirs == own && !OPEN_LAYERS.contains(&own_name) {
            found.push(format!(
                "{file}: `{module}` names `crate::{other}`: {own_name} never name each other; \
                 put the contract in `crate::seams` and wire it in `node`"
            ));
        }
    }
    found
}

#[test]
fn every_module_keeps_to_its_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut foundation_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(&src) {
        let Some(module) = top_module(&src, &file) else {
            continue;
        };
        let code = code_only(&fs::read_to_string(&file).expect("read a source file"));
        let named = crate_modules_named(&code);
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        problems.extend(violations(&module, &shown, &named));
        if layer_of(&module) == Some(0) {
            foundation_edges
                .entry(module)
                .or_default()
                .extend(named.into_iter().filter(|other| layer_of(other) == Some(0)));
        }
    }
    if let Some(circle) = find_circle(&foundation_edges) {
        problems.push(format!(
            "the foundation modules name each other in a circle: {}",
            circle.join(" -> ")
        ));
    }
    assert!(
        problems.is_empty(),
        "the layer rule (docs/ARCHITECTURE.md, \"Layers\") is broken:\n  {}",
        problems.join("\n  ")
    );
}

/// A circle in `edges`, as the modules along it, if there is one.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if next != node
                && let Some(circle) = visit(next, edges, path, done)
            {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_checker_sees_what_it_must() {
    let code = code_only(
        r#"
        use crate::{config::Config, compute::{self, Compute}, events};
        // use crate::ledger::Hidden;
        let s = "crate::storage::NotCode";
        let c = '"'; fn f<'a>(x: &'a str) {}
        let p = crate::transport::start;
        "#,
    );
    let named = crate_modules_named(&code);
    let expected: BTreeSet<String> = ["compute", "config", "events", "transport"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(named, expected);
    let found = violations("market", "market/mod.rs", &named);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("crate::compute"), "{found:?}");
    assert_eq!(violations("config", "config/mod.rs", &named).len(), 2);
    assert!(violations("node", "node/mod.rs", &named).is_empty());
    assert_eq!(violations("newpart", "newpart.rs", &named).len(), 1);

    let circle: BTreeMap<String, BTreeSet<String>> = [
        ("config", "events"),
        ("events", "seams"),
        ("seams", "config"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), BTreeSet::from([b.to_string()])))
    .collect();
    assert!(find_circle(&circle).is_some());
    let mut line = circle.clone();
    line.remove("seams");
    assert!(find_circle(&line).is_none());
}
