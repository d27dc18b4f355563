//! Turning untrusted module bytes into a compiled, checked, ready-to-instantiate module.

use wasmtime::{Engine, InstancePre, Linker, Module};

use crate::abi::ModuleAbi;
use crate::limiter::CallState;

/// Why a module was refused at deploy time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    /// The module is larger than the runtime accepts.
    #[error("module is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the module that was offered.
        size: usize,
        /// Largest module the runtime accepts.
        limit: usize,
    },
    /// The bytes do not start with the WASM binary magic (`\0asm`). Text modules must be
    /// converted with [`wat_to_wasm`] first, so that the module id names the binary that runs.
    #[error("not a WASM binary: it must start with \\0asm (convert WAT text with wat_to_wasm)")]
    NotWasmBinary,
    /// The module failed validation or compilation.
    #[error("invalid module: {reason}")]
    InvalidModule {
        /// What the validator or compiler reported.
        reason: String,
    },
    /// The module imports something. Modules get no ambient capabilities: no WASI, no host
    /// functions.
    #[error("module imports {module}::{name}; modules may not import anything")]
    ForbiddenImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
    },
    /// An export the ABI requires is absent.
    #[error("module does not export `{name}`, which the ABI requires")]
    MissingExport {
        /// Name of the missing export.
        name: String,
    },
    /// An export the ABI requires has the wrong kind or signature.
    #[error("export `{name}` must be {expected}, found {found}")]
    WrongExportType {
        /// Name of the export.
        name: String,
        /// What the ABI requires.
        expected: String,
        /// What the module has.
        found: String,
    },
    /// No export has the entry-point signature `(i32, i32) -> i64`, so nothing could be invoked.
    #[error("module exports no function of type (param i32 i32) (result i64)")]
    NoFunctions,
    /// The module's initial memory is larger than the runtime's memory ceiling.
    #[error("module declares {declared_bytes} bytes of initial memory, the limit is {limit}")]
    MemoryTooLarge {
        /// Initial memory the module declares, in bytes.
        declared_bytes: u64,
        /// Largest memory the runtime grants, in bytes.
        limit: u64,
    },
    /// WAT text could not be parsed.
    #[error("invalid WAT text: {reason}")]
    InvalidWat {
        /// What the WAT parser reported.
        reason: String,
    },
}

/// Converts WebAssembly text (WAT) into the binary form that [`Runtime::deploy`](crate::Runtime::deploy)
/// accepts.
pub fn wat_to_wasm(text: &str) -> Result<Vec<u8>, DeployError> {
    wat::parse_str(text).map_err(|err| DeployError::InvalidWat {
        reason: err.to_string(),
    })
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// A compiled module together with where its ABI exports are.
pub(crate) struct DeployedModule {
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) abi: ModuleAbi,
}

/// Size bounds and memory ceiling a module must respect to be deployed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeployRules {
    pub(crate) max_module_bytes: usize,
    pub(crate) max_memory_bytes: u64,
}

impl DeployedModule {
    /// Validates and compiles `wasm`. With the engine's compilation cache enabled, a module
    /// compiled before (by this process or an earlier one) is loaded from disk instead.
    pub(crate) fn compile(
        engine: &Engine,
        linker: &Linker<CallState>,
        wasm: &[u8],
        rules: DeployRules,
    ) -> Result<Self, DeployError> {
        if wasm.len() > rules.max_module_bytes {
            return Err(DeployError::TooLarge {
                size: wasm.len(),
                limit: rules.max_module_bytes,
            });
        }
        if !wasm.starts_with(WASM_MAGIC) {
            return Err(DeployError::NotWasmBinary);
        }
        let module =
            Module::from_binary(engine, wasm).map_err(|err| DeployError::InvalidModule {
                reason: format!("{err:#}"),
            })?;
        let abi = ModuleAbi::inspect(&module, rules.max_memory_bytes)?;
        // The linker is empty: with no imports allowed, this only prepares instantiation.
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|err| DeployError::InvalidModule {
                reason: format!("{err:#}"),
            })?;
        Ok(Self { pre, abi })
    }

    /// Names of the functions the module exports, sorted.
    pub(crate) fn function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.abi.functions.keys().cloned().collect();
        names.sort();
        names
    }
}
