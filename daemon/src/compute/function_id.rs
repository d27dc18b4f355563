//! Function ids: how callers name the functions this node offers, and what the marketplace
//! will advertise for them.
//!
//! A WASM function is `<module>/<export>`: `<module>` is the module's name when it has one,
//! otherwise its id in hex; a named module's functions also answer to `<module id hex>/<export>`.
//! A served function is the name its server registered. Served names cannot contain `/`, so the
//! two kinds never collide. The advertised function hash is `Blake3(function id)`, the seeds'
//! `function_id = hash(name)`.

use mehr_compute::ModuleId;

/// Longest served function name, in bytes.
pub const MAX_SERVED_NAME_LEN: usize = 128;
/// Longest module name, in bytes.
pub const MAX_MODULE_NAME_LEN: usize = 64;

/// Why a name or a function id is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("is {len} bytes long, the limit is {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name has a character outside the allowed set.
    #[error("has {found:?} at byte {at}: only letters, digits, '.', '_' and '-' are allowed")]
    BadCharacter {
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name starts with punctuation.
    #[error("must start with a letter or digit")]
    BadStart,
    /// A module name that reads as a module id would shadow another module.
    #[error("is 64 hex digits, which reads as a module id")]
    LooksLikeModuleId,
}

/// Checks a served function's name: 1 to 128 bytes of ASCII letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit.
pub fn check_served_name(name: &str) -> Result<(), NameError> {
    check_name(name, MAX_SERVED_NAME_LEN)
}

/// Checks a module name: like a served name, at most 64 bytes, and not 64 hex digits.
pub fn check_module_name(name: &str) -> Result<(), NameError> {
    check_name(name, MAX_MODULE_NAME_LEN)?;
    if is_module_id_hex(name) {
        return Err(NameError::LooksLikeModuleId);
    }
    Ok(())
}

fn check_name(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            len: name.len(),
            max,
        });
    }
    if let Some((at, found)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadCharacter { found, at });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::BadStart);
    }
    Ok(())
}

fn is_module_id_hex(text: &str) -> bool {
    text.len() == ModuleId::LEN * 2 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a function id names, before looking it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionRef<'a> {
    /// An export of the module with this id.
    WasmById {
        /// The module.
        module: ModuleId,
        /// The export.
        export: &'a str,
    },
    /// An export of the module with this name.
    WasmByName {
        /// The module's name.
        module: &'a str,
        /// The export.
        export: &'a str,
    },
    /// A served function.
    Served(&'a str),
}

impl<'a> FunctionRef<'a> {
    /// Splits `id` at its first `/`: with one it names a WASM export, without one a served
    /// function. Export names may themselves contain `/`.
    pub fn parse(id: &'a str) -> FunctionRef<'a> {
        match id.split_once('/') {
            // Module names are never 64 hex digits, so this reading is unambiguous.
            Some((module, export)) => match module.parse::<ModuleId>() {
                Ok(module) => FunctionRef::WasmById { module, export },
                Err(_) => FunctionRef::WasmByName { module, export },
            },
            None => FunctionRef::Served(id),
        }
    }
}

/// The id of a WASM function: `<name>/<export>` for a named module, `<id hex>/<export>`
/// otherwise.
pub fn wasm_function_id(module: &ModuleId, name: Option<&str>, export: &str) -> String {
    match name {
        Some(name) => format!("{name}/{export}"),
        None => format!("{module}/{export}"),
    }
}

/// The hash the marketplace advertises for a function: Blake3 of its id.
pub fn function_hash(function_id: &str) -> [u8; 32] {
    *blake3::hash(function_id.as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn served_names() {
        assert_eq!(check_served_name("embed-minilm"), Ok(()));
        assert_eq!(check_served_name("whisper.small_v2"), Ok(()));
        assert_eq!(check_served_name(""), Err(NameError::Empty));
        assert_eq!(check_served_name("-x"), Err(NameError::BadStart));
        assert_eq!(
            check_served_name("a/b"),
            Err(NameError::BadCharacter { found: '/', at: 1 })
        );
        assert_eq!(
            check_served_name("naïve"),
            Err(NameError::BadCharacter { found: 'ï', at: 2 })
        );
        assert_eq!(
            check_served_name(&"a".repeat(129)),
            Err(NameError::TooLong { len: 129, max: 128 })
        );
    }

    #[test]
    fn module_names_cannot_read_as_ids() {
        assert_eq!(check_module_name("text"), Ok(()));
        assert_eq!(
            check_module_name(&"ab".repeat(32)),
            Err(NameError::LooksLikeModuleId)
        );
        assert_eq!(check_module_name(&"ab".repeat(31)), Ok(()));
        assert!(matches!(
            check_module_name(&"a".repeat(65)),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn parse_distinguishes_the_three_forms() {
        let id = ModuleId::of_wasm(b"module");
        let by_id = format!("{id}/reverse");
        assert_eq!(
            FunctionRef::parse(&by_id),
            FunctionRef::WasmById {
                module: id,
                export: "reverse"
            }
        );
        assert_eq!(
            FunctionRef::parse("text/a/b"),
            FunctionRef::WasmByName {
                module: "text",
                export: "a/b"
            }
        );
        assert_eq!(
            FunctionRef::parse("embed-minilm"),
            FunctionRef::Served("embed-minilm")
        );
        assert_eq!(
            FunctionRef::parse("/x"),
            FunctionRef::WasmByName {
                module: "",
                export: "x"
            }
        );
    }

    #[test]
    fn ids_and_hashes() {
        let id = ModuleId::of_wasm(b"m");
        assert_eq!(wasm_function_id(&id, Some("text"), "rev"), "text/rev");
        assert_eq!(wasm_function_id(&id, None, "rev"), format!("{id}/rev"));
        assert_eq!(
            function_hash("embed-minilm"),
            *blake3::hash(b"embed-minilm").as_bytes()
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_valid_names_are_served(text in ".{0,200}") {
            let _ = FunctionRef::parse(&text);
            if check_served_name(&text).is_ok() {
                prop_assert_eq!(FunctionRef::parse(&text), FunctionRef::Served(&text));
            }
        }
    }
}
