//! What the market needs of the node's functions: what is offered (for the advert) and a way
//! to run one, its output streamed. The compute part implements [`LocalFunctions`]; the
//! market takes it as a trait object, so it runs jobs without knowing how functions are
//! hosted (a WASM module, a served function, a test double).

use std::time::Duration;

use futures::stream::BoxStream;
use prost::bytes::Bytes;

/// How a function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// An export of a deployed WASM module.
    Wasm,
    /// A function served by a client over a Serve stream.
    Served,
}

/// What a call costs, in μMHR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Price {
    /// A flat price per call (served functions).
    PerInvocation(u64),
    /// A price per million units of fuel (WASM functions).
    PerMillionFuel(u64),
}

/// A function as the marketplace advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFunction {
    /// The id to call it by.
    pub function_id: String,
    /// WASM or served.
    pub kind: FunctionKind,
    /// What it does.
    pub description: String,
    /// What a call costs.
    pub price: Price,
    /// Calls that may run at once.
    pub max_concurrency: u32,
    /// Largest input.
    pub max_input_bytes: u32,
    /// The deployed module that exports it (WASM functions).
    pub module_id: Option<[u8; 32]>,
}

/// A call the market runs here for a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    /// The function id.
    pub function_id: String,
    /// The input.
    pub input: Bytes,
    /// How long the call may take; `None` uses the function's default.
    pub deadline: Option<Duration>,
}

/// A piece of a call's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputPart {
    /// Output produced before the end; more follows.
    Partial(Bytes),
    /// The last output, and the fuel the call burnt (zero for served functions).
    Final {
        /// The last bytes (possibly empty when everything came as partial output).
        output: Bytes,
        /// WASM fuel used.
        fuel_used: u64,
    },
}

/// A call's output: parts, then one [`OutputPart::Final`]; an `Err` (in words) ends it.
pub type OutputStream = BoxStream<'static, Result<OutputPart, String>>;

/// The node's functions, as the market sees them.
pub trait LocalFunctions: Send + Sync + 'static {
    /// Every function this node offers now, in id order.
    fn offered(&self) -> Vec<OfferedFunction>;

    /// Starts a call. An `Err` says why it could not start (an unknown function, a full
    /// queue, an input too large).
    fn start(&self, call: FunctionCall) -> Result<OutputStream, String>;

    /// How busy the functions are: 0 (idle) … 255 (every slot taken), calls waiting counted.
    fn load(&self) -> u8;
}

/// Runs a call to its end: the whole output (the parts and the final bytes, in order) and
/// the fuel used.
pub async fn run_to_end(
    functions: &dyn LocalFunctions,
    call: FunctionCall,
) -> Result<(Vec<u8>, u64), String> {
    run_with_parts(functions, call, |_| {}).await
}

/// Like [`run_to_end`], handing each part of the output to `on_part` as it comes (a streamed
/// job forwards them to its consumer ahead of the result).
pub async fn run_with_parts(
    functions: &dyn LocalFunctions,
    call: FunctionCall,
    mut on_part: impl FnMut(&Bytes),
) -> Result<(Vec<u8>, u64), String> {
    use futures::StreamExt;
    let mut parts = functions.start(call)?;
    let mut output = Vec::new();
    while let Some(part) = parts.next().await {
        match part? {
            OutputPart::Partial(bytes) => {
                on_part(&bytes);
                output.extend_from_slice(&bytes);
            }
            OutputPart::Final {
                output: last,
                fuel_used,
            } => {
                output.extend_from_slice(&last);
                return Ok((output, fuel_used));
            }
        }
    }
    Err("the function ended without a result".into())
}
