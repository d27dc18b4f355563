//! Calling and deploying functions: `ComputeService` from the consumer's side. Serving
//! functions is in [`crate::serve`].

use std::time::Duration;

use futures::StreamExt;
use mehr_proto::v1::{self as pb, compute_service_client::ComputeServiceClient};
use prost::bytes::Bytes;

use crate::{AuthedChannel, Client, Error, EventStream, market::Tier};

/// Largest message the SDK accepts from the daemon on `ComputeService`: the daemon enforces
/// its own, configured limits on modules, inputs and outputs; this only has to be above them.
const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// Where a call may run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// The local node when it offers the function, otherwise providers on the mesh.
    #[default]
    Auto,
    /// Only the local node.
    Local,
    /// Only other nodes, found by the marketplace.
    Mesh,
}

impl Placement {
    fn to_proto(self) -> pb::Placement {
        match self {
            Placement::Auto => pb::Placement::Unspecified,
            Placement::Local => pb::Placement::Local,
            Placement::Mesh => pb::Placement::Mesh,
        }
    }
}

/// Optional limits of one call. The defaults are the function's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvokeOptions {
    /// Wall-clock time the call may take, waiting for a free slot included. `None` uses the
    /// function's default; longer values are lowered to the node's maximum.
    pub deadline: Option<Duration>,
    /// WASM only: the most fuel the call may burn. `None` uses the node's limit.
    pub max_fuel: Option<u64>,
    /// Where the call may run.
    pub placement: Placement,
    /// Calls on the mesh: how the result is verified (`None`: reputation).
    pub tier: Option<Tier>,
    /// Calls on the mesh: the most to pay one provider, μMHR (`None`: any price).
    pub max_price_umhr: Option<u64>,
}

impl InvokeOptions {
    /// Sets the deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the fuel limit.
    pub fn max_fuel(mut self, fuel: u64) -> Self {
        self.max_fuel = Some(fuel);
        self
    }

    /// Sets where the call may run.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Sets the verification tier of a call on the mesh.
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = Some(tier);
        self
    }

    /// Sets the price cap of a call on the mesh, μMHR per provider.
    pub fn max_price(mut self, umhr: u64) -> Self {
        self.max_price_umhr = Some(umhr);
        self
    }

    fn deadline_ms(&self) -> u64 {
        // 0 means "the default" on the wire, so a sub-millisecond deadline becomes 1 ms.
        self.deadline.map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        })
    }
}

impl Client {
    /// The raw `ComputeService` client, accepting messages as large as the daemon sends.
    pub fn compute(&self) -> ComputeServiceClient<AuthedChannel> {
        ComputeServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Deploys a WebAssembly module (binary, starting with `\0asm`), optionally under a name;
    /// its functions are then `<name>/<export>` (or `<module id hex>/<export>`).
    pub async fn deploy_module(
        &self,
        wasm: impl Into<Bytes>,
        name: Option<&str>,
    ) -> Result<pb::DeployModuleResponse, Error> {
        Ok(self
            .compute()
            .deploy_module(pb::DeployModuleRequest {
                wasm: wasm.into(),
                name: name.unwrap_or_default().to_string(),
            })
            .await?
            .into_inner())
    }

    /// Removes a module, named or by id in hex; its functions are no longer offered.
    pub async fn remove_module(&self, module: &str) -> Result<pb::DeleteModuleResponse, Error> {
        Ok(self
            .compute()
            .delete_module(pb::DeleteModuleRequest {
                module: module.to_string(),
            })
            .await?
            .into_inner())
    }

    /// One page of the functions the node offers; pass the previous page's
    /// `next_page_token` (empty for the first page). `page_size` 0 means the daemon's default.
    pub async fn list_functions_page(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<pb::ListFunctionsResponse, Error> {
        Ok(self
            .compute()
            .list_functions(pb::ListFunctionsRequest {
                page_size,
                page_token: page_token.to_string(),
            })
            .await?
            .into_inner())
    }

    /// Every function the node offers, ordered by id (all pages).
    pub async fn list_functions(&self) -> Result<Vec<pb::FunctionInfo>, Error> {
        let mut functions = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.list_functions_page(0, &token).await?;
            functions.extend(page.functions);
            if page.next_page_token.is_empty() {
                return Ok(functions);
            }
            token = page.next_page_token;
        }
    }

    /// Calls a function with default limits and returns its whole output.
    pub async fn invoke(
        &self,
        function_id: &str,
        input: impl Into<Bytes>,
    ) -> Result<pb::InvokeResponse, Error> {
        self.invoke_with(function_id, input, InvokeOptions::default())
            .await
    }

    /// Calls a function with `options` and returns its whole output.
    pub async fn invoke_with(
        &self,
        function_id: &str,
        input: impl Into<Bytes>,
        options: InvokeOptions,
    ) -> Result<pb::InvokeResponse, Error> {
        Ok(self
            .compute()
            .invoke(pb::InvokeRequest {
                function_id: function_id.to_string(),
                input: input.into(),
                deadline_ms: options.deadline_ms(),
                max_fuel: options.max_fuel.unwrap_or(0),
                placement: options.placement.to_proto() as i32,
                tier: options.tier.map(Tier::to_proto),
                max_price_umhr: options.max_price_umhr,
            })
            .await?
            .into_inner())
    }

    /// Calls a function and streams its output: partial outputs as they come, then a message
    /// with `done` set and the metering. Dropping the stream cancels the call.
    pub async fn invoke_stream(
        &self,
        function_id: &str,
        input: impl Into<Bytes>,
        options: InvokeOptions,
    ) -> Result<EventStream<pb::InvokeStreamResponse>, Error> {
        let stream = self
            .compute()
            .invoke_stream(pb::InvokeStreamRequest {
                function_id: function_id.to_string(),
                input: input.into(),
                deadline_ms: options.deadline_ms(),
                max_fuel: options.max_fuel.unwrap_or(0),
                placement: options.placement.to_proto() as i32,
                tier: options.tier.map(Tier::to_proto),
                max_price_umhr: options.max_price_umhr,
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.map(|item| item.map_err(Error::from))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_zero_means_default_so_tiny_deadlines_round_up() {
        assert_eq!(InvokeOptions::default().deadline_ms(), 0);
        assert_eq!(
            InvokeOptions::default()
                .deadline(Duration::from_micros(10))
                .deadline_ms(),
            1
        );
        assert_eq!(
            InvokeOptions::default()
                .deadline(Duration::from_secs(2))
                .deadline_ms(),
            2000
        );
    }
}
