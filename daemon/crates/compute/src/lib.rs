//! The Mehr WASM sandbox.
//!
//! Modules are content-addressed ([`ModuleId`] = Blake3 of the bytes), import nothing, and follow
//! a bytes-in/bytes-out ABI (see [`abi`]). [`Runtime::deploy`] validates and compiles a module
//! once; [`Runtime::invoke`] runs one of its functions in a fresh, isolated instance under
//! [`Limits`]: fuel (the priced unit), memory, a wall-clock deadline, and input and output
//! sizes. Every way a call can fail is a distinct [`InvokeError`], and none of them affects
//! later calls.
//!
//! ```
//! use mehr_compute::{Runtime, RuntimeConfig, Tier, wat_to_wasm};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let wasm = wat_to_wasm(r#"(module
//!     (memory (export "memory") 1)
//!     (func (export "mehr_alloc") (param i32) (result i32) i32.const 1024)
//!     (func (export "echo") (param $ptr i32) (param $len i32) (result i64)
//!         (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
//!                 (i64.extend_i32_u (local.get $len)))))"#)?;
//! let module = runtime.deploy(&wasm)?;
//! let output = runtime.invoke(&module, "echo", b"hello", &Tier::Light.limits())?;
//! assert_eq!(output.bytes, b"hello");
//! assert!(output.fuel_used > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod abi;
mod deploy;
mod epoch;
mod invoke;
mod limiter;
mod limits;
mod module_id;
mod runtime;

pub use deploy::{DeployError, wat_to_wasm};
pub use invoke::{InvokeError, Output};
pub use limits::{Limits, Tier};
pub use module_id::{ModuleId, ModuleIdParseError};
pub use runtime::{CacheStats, Runtime, RuntimeConfig, RuntimeError};
