//! A Mehr compute guest in Rust, following the bytes-in/bytes-out ABI of `mehr-compute`.
//!
//! Each call runs in a fresh instance that is thrown away afterwards, so the guest never frees:
//! leaking the input and output buffers is correct and the cheapest thing to do.

use std::collections::HashMap;

/// ABI allocator: returns `len` writable bytes for the host to copy the input into.
#[unsafe(no_mangle)]
pub extern "C" fn mehr_alloc(len: i32) -> i32 {
    let buffer: &mut [u8] = Vec::leak(vec![0; len as u32 as usize]);
    buffer.as_mut_ptr() as i32
}

fn input<'a>(ptr: i32, len: i32) -> &'a [u8] {
    // SAFETY: the host wrote `len` bytes at `ptr`, a region that `mehr_alloc` handed out.
    unsafe { std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len as u32 as usize) }
}

fn output(bytes: Vec<u8>) -> i64 {
    let bytes = Vec::leak(bytes);
    (((bytes.as_ptr() as u32 as u64) << 32) | bytes.len() as u32 as u64) as i64
}

/// Word frequencies of a UTF-8 text, most frequent first, one `word count` per line.
/// Words are compared case-insensitively; invalid UTF-8 is replaced, not rejected.
#[unsafe(no_mangle)]
pub extern "C" fn word_frequencies(ptr: i32, len: i32) -> i64 {
    let text = String::from_utf8_lossy(input(ptr, len)).to_lowercase();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        *counts.entry(word).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u32)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = String::new();
    for (word, count) in ranked {
        out.push_str(word);
        out.push(' ');
        out.push_str(&count.to_string());
        out.push('\n');
    }
    output(out.into_bytes())
}

/// The input with every byte's bits inverted; panics (a trap for the host) on empty input.
#[unsafe(no_mangle)]
pub extern "C" fn invert(ptr: i32, len: i32) -> i64 {
    let bytes = input(ptr, len);
    assert!(!bytes.is_empty(), "invert needs at least one byte");
    output(bytes.iter().map(|byte| !byte).collect())
}
