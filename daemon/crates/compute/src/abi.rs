//! The bytes-in/bytes-out calling convention between the host and a guest module.
//!
//! A module exports:
//! - `memory`: its one linear memory (32-bit);
//! - `mehr_alloc(len: i32) -> i32`: returns the address of `len` writable bytes;
//! - one or more functions `(ptr: i32, len: i32) -> i64`: read the input at `ptr..ptr+len` and
//!   return `(out_ptr << 32) | out_len`, both unsigned 32-bit.
//!
//! The module imports nothing. Every export of the function shape except `mehr_alloc` is a
//! callable function; its export name is the function name.

use std::collections::HashMap;

use wasmtime::{ExternType, FuncType, Module, ModuleExport, ValType};

use crate::DeployError;

/// Export name of the guest's linear memory.
pub const MEMORY_EXPORT: &str = "memory";
/// Export name of the guest's allocator, `(len: i32) -> i32`.
pub const ALLOC_EXPORT: &str = "mehr_alloc";

/// Where the host finds the ABI's exports in one compiled module. Export indices avoid string
/// lookups on the warm path.
pub(crate) struct ModuleAbi {
    pub(crate) memory: ModuleExport,
    pub(crate) alloc: ModuleExport,
    pub(crate) functions: HashMap<String, ModuleExport>,
}

impl ModuleAbi {
    /// Checks that `module` follows the ABI: no imports, the memory and allocator exports with
    /// the right types, at least one function, and an initial memory no larger than
    /// `max_memory_bytes`.
    pub(crate) fn inspect(module: &Module, max_memory_bytes: u64) -> Result<Self, DeployError> {
        if let Some(import) = module.imports().next() {
            return Err(DeployError::ForbiddenImport {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
            });
        }

        let memory_type = match export_type(module, MEMORY_EXPORT)? {
            ExternType::Memory(memory) => memory,
            other => return Err(wrong_type(MEMORY_EXPORT, "memory", &other)),
        };
        if memory_type.is_64() || memory_type.is_shared() {
            return Err(DeployError::WrongExportType {
                name: MEMORY_EXPORT.to_owned(),
                expected: "unshared 32-bit memory".to_owned(),
                found: "64-bit or shared memory".to_owned(),
            });
        }
        let declared_bytes = memory_type
            .minimum()
            .saturating_mul(memory_type.page_size());
        if declared_bytes > max_memory_bytes {
            return Err(DeployError::MemoryTooLarge {
                declared_bytes,
                limit: max_memory_bytes,
            });
        }

        match export_type(module, ALLOC_EXPORT)? {
            ExternType::Func(func) if is_alloc(&func) => {}
            other => {
                return Err(wrong_type(
                    ALLOC_EXPORT,
                    "func (param i32) (result i32)",
                    &other,
                ));
            }
        }

        let mut functions = HashMap::new();
        for export in module.exports() {
            let name = export.name();
            if name == ALLOC_EXPORT {
                continue;
            }
            if let ExternType::Func(func) = export.ty()
                && is_entry_point(&func)
                && let Some(index) = module.get_export_index(name)
            {
                functions.insert(name.to_owned(), index);
            }
        }
        if functions.is_empty() {
            return Err(DeployError::NoFunctions);
        }

        Ok(Self {
            memory: export_index(module, MEMORY_EXPORT)?,
            alloc: export_index(module, ALLOC_EXPORT)?,
            functions,
        })
    }
}

/// Splits a function's return value into `(out_ptr, out_len)`.
pub(crate) fn unpack_result(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, bits as u32)
}

fn export_type(module: &Module, name: &str) -> Result<ExternType, DeployError> {
    module
        .get_export(name)
        .ok_or_else(|| DeployError::MissingExport {
            name: name.to_owned(),
        })
}

fn export_index(module: &Module, name: &str) -> Result<ModuleExport, DeployError> {
    module
        .get_export_index(name)
        .ok_or_else(|| DeployError::MissingExport {
            name: name.to_owned(),
        })
}

fn is_alloc(func: &FuncType) -> bool {
    has_signature(func, &[ValType::I32], &[ValType::I32])
}

fn is_entry_point(func: &FuncType) -> bool {
    has_signature(func, &[ValType::I32, ValType::I32], &[ValType::I64])
}

fn has_signature(func: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    func.params().len() == params.len()
        && func.results().len() == results.len()
        && func
            .params()
            .zip(params)
            .all(|(seen, want)| ValType::eq(&seen, want))
        && func
            .results()
            .zip(results)
            .all(|(seen, want)| ValType::eq(&seen, want))
}

fn wrong_type(name: &str, expected: &str, found: &ExternType) -> DeployError {
    DeployError::WrongExportType {
        name: name.to_owned(),
        expected: expected.to_owned(),
        found: describe(found),
    }
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(func) => func.to_string(),
        ExternType::Global(_) => "global".to_owned(),
        ExternType::Table(_) => "table".to_owned(),
        ExternType::Memory(_) => "memory".to_owned(),
        ExternType::Tag(_) => "tag".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn unpack_inverts_packing(ptr in any::<u32>(), len in any::<u32>()) {
            let packed = ((u64::from(ptr) << 32) | u64::from(len)) as i64;
            prop_assert_eq!(unpack_result(packed), (ptr, len));
        }
    }
}
