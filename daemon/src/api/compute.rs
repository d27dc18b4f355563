//! `mehr.v1.ComputeService`: converts between proto messages and the compute part's types, and
//! delegates to [`Compute`].

use std::{
    pin::Pin,
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use mehr_proto::v1::{
    self as pb, DeleteModuleRequest, DeleteModuleResponse, DeployModuleRequest,
    DeployModuleResponse, InvokeRequest, InvokeResponse, InvokeStreamRequest, InvokeStreamResponse,
    ListFunctionsRequest, ListFunctionsResponse, ServeRequest, ServeResponse,
    compute_service_server::{ComputeService, ComputeServiceServer},
};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    market::{DEFAULT_JOB_DEADLINE, providers_to_proto, tier_from_proto},
    paging::{Filters, PageRequest},
    status::{Reason, failure, failure_with, invalid_field},
};
use crate::{
    compute::{
        CancelReason, Chunk, Compute, FromProvider, FunctionInfo, FunctionKind, InvokeFailure,
        Metering, Price, RegistrationError, ServedFunctionSpec, SessionViolation, ToProvider,
    },
    market::{Market, MarketError, PartialSink, ProviderOutcome, VerifiedCall},
};

/// How much earlier than the API's request timeout a unary Invoke gives up, so the caller gets
/// the function's DEADLINE_EXCEEDED rather than the transport's CANCELLED.
const UNARY_MARGIN: Duration = Duration::from_millis(250);
/// Stream messages queued for a slow InvokeStream caller before the call waits for it.
const STREAM_QUEUE: usize = 16;

/// The ComputeService implementation.
#[derive(Clone)]
pub struct ComputeApi {
    compute: Compute,
    /// Runs calls on the mesh; `None` when the marketplace is disabled.
    market: Option<Market>,
    node_id: [u8; 16],
    unary_deadline_cap: Duration,
}

impl ComputeApi {
    /// Serves `compute` for the node `node_id`, sending calls it cannot run itself to the
    /// mesh through `market`; unary calls must finish within `request_timeout` (the API's
    /// per-request timeout).
    pub fn new(
        compute: Compute,
        market: Option<Market>,
        node_id: [u8; 16],
        request_timeout: Duration,
    ) -> Self {
        ComputeApi {
            compute,
            market,
            node_id,
            unary_deadline_cap: request_timeout.saturating_sub(UNARY_MARGIN),
        }
    }

    /// The tonic service, accepting messages as large as the compute limits need.
    pub fn into_server(self) -> ComputeServiceServer<ComputeApi> {
        let limit = self.compute.max_message_bytes();
        ComputeServiceServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    fn metering(&self, metering: &Metering) -> pb::InvocationMetering {
        pb::InvocationMetering {
            kind: kind_to_proto(metering.kind) as i32,
            provider_node_id: self.node_id.to_vec().into(),
            fuel_used: metering.fuel_used,
            duration_us: u64::try_from(metering.duration.as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// Whether a call that this node could not resolve (`failure`) goes to the mesh instead.
    fn falls_back_to_mesh(&self, placement: pb::Placement, failure: &InvokeFailure) -> bool {
        placement == pb::Placement::Unspecified
            && self.market.is_some()
            && matches!(failure, InvokeFailure::UnknownFunction { .. })
    }

    /// Runs a call on providers found by the marketplace, verified per its tier.
    async fn invoke_on_mesh(&self, call: MeshCall) -> Result<MeshResult, Status> {
        let market = self.market.as_ref().ok_or_else(|| {
            failure(
                Reason::MarketDisabled,
                "the marketplace is disabled (market.enabled = false), so calls cannot run on \
                 the mesh",
            )
        })?;
        let started = Instant::now();
        let outcome = market
            .invoke_verified(VerifiedCall {
                function: call.function_id,
                input: call.input.to_vec(),
                tier: tier_from_proto(call.tier.as_ref())?,
                max_price_umhr: call.max_price_umhr,
                deadline: call.deadline,
                partials: call.partials,
            })
            .await
            .map_err(|e| match e {
                // The caller asked the compute service for a function: say so in its terms.
                MarketError::NoProviders {
                    ref function,
                    found,
                    needed,
                } => failure_with(
                    Reason::NoProviders,
                    if call.fell_back {
                        format!(
                            "no function `{function}` on this node, and {found} provider(s) of \
                             it on the mesh under the price cap where the tier needs {needed}"
                        )
                    } else {
                        format!(
                            "no provider of `{function}` on the mesh: {found} found under the \
                             price cap, the tier needs {needed}"
                        )
                    },
                    &[("function_id", function.clone())],
                ),
                e => Status::from(e),
            })?;
        let provider = outcome
            .providers
            .iter()
            .find(|p| p.outcome == ProviderOutcome::Agreed)
            .map(|p| p.node_id.0.to_vec())
            .unwrap_or_default();
        let metering = pb::InvocationMetering {
            kind: pb::FunctionKind::Unspecified as i32,
            provider_node_id: provider.into(),
            fuel_used: 0,
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        };
        let remote = pb::RemoteCall {
            output_hash: outcome.output_hash.to_vec().into(),
            audited: outcome.audited,
            escalated: outcome.escalated,
            charged_umhr: outcome.charged_umhr,
            providers: providers_to_proto(outcome.providers),
        };
        Ok(MeshResult {
            output: outcome.output.into(),
            metering,
            remote,
        })
    }
}

impl ComputeApi {
    /// Runs `call` on the mesh and streams its output: the provider's parts (from `parts`, put
    /// in `seq` order) as they come, then the rest of the verified output. The parts must be
    /// the start of the output the provider signed; if they are not, the stream ends with
    /// DATA_LOSS. Dropping the stream drops the call.
    fn stream_from_mesh(
        &self,
        call: MeshCall,
        mut parts: tokio::sync::mpsc::UnboundedReceiver<(u32, Vec<u8>)>,
    ) -> BoxStream<InvokeStreamResponse> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        let api = self.clone();
        tokio::spawn(async move {
            let invoke = api.invoke_on_mesh(call);
            tokio::pin!(invoke);
            let mut sent = Vec::new();
            let mut waiting = std::collections::BTreeMap::new();
            let mut next = 0u32;
            let result = loop {
                tokio::select! {
                    result = &mut invoke => break result,
                    Some((seq, bytes)) = parts.recv() => {
                        if seq >= next {
                            waiting.insert(seq, bytes);
                        }
                        while let Some(bytes) = waiting.remove(&next) {
                            next = next.wrapping_add(1);
                            sent.extend_from_slice(&bytes);
                            let part = InvokeStreamResponse {
                                output: bytes.into(),
                                done: false,
                                metering: None,
                                remote: None,
                            };
                            if tx.send(Ok(part)).await.is_err() {
                                return; // the caller went away
                            }
                        }
                    }
                }
            };
            let last = result.and_then(|result| {
                let rest = result.output.strip_prefix(sent.as_slice()).ok_or_else(|| {
                    failure(
                        Reason::OutputMismatch,
                        "the output streamed from the provider is not the start of the output it \
                         signed (it failed after streaming, or its parts were altered)",
                    )
                })?;
                Ok(InvokeStreamResponse {
                    output: prost::bytes::Bytes::copy_from_slice(rest),
                    done: true,
                    metering: Some(result.metering),
                    remote: Some(result.remote),
                })
            });
            let _ = tx.send(last).await;
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

/// A call bound for the mesh.
struct MeshCall {
    /// Whether the call went to the mesh because this node lacks the function (rather
    /// than because the caller asked for the mesh).
    fell_back: bool,
    function_id: String,
    input: prost::bytes::Bytes,
    deadline: Duration,
    tier: Option<pb::VerificationTier>,
    max_price_umhr: Option<u64>,
    /// Where the output goes as it is produced (InvokeStream), when the tier allows.
    partials: Option<PartialSink>,
}

/// What a call on the mesh returned.
struct MeshResult {
    output: prost::bytes::Bytes,
    metering: pb::InvocationMetering,
    remote: pb::RemoteCall,
}

/// The placement a request asked for; an unknown value is bad input.
fn placement(value: i32) -> Result<pb::Placement, Status> {
    pb::Placement::try_from(value).map_err(|_| {
        invalid_field(
            "placement",
            format!("placement: {value} is not a Placement"),
        )
    })
}

/// A call's deadline on the mesh: the one asked for (or the default), capped by `cap`.
fn mesh_deadline(deadline_ms: u64, cap: Option<Duration>) -> Duration {
    let asked = match deadline_ms {
        0 => DEFAULT_JOB_DEADLINE,
        ms => Duration::from_millis(ms),
    };
    cap.map_or(asked, |cap| asked.min(cap))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A request's fields as the compute part wants them: 0 means "the default".
fn invoke_request(
    function_id: String,
    input: prost::bytes::Bytes,
    deadline_ms: u64,
    max_fuel: u64,
    deadline_cap: Option<Duration>,
) -> crate::compute::InvokeRequest {
    crate::compute::InvokeRequest {
        function_id,
        input,
        deadline: (deadline_ms > 0).then(|| Duration::from_millis(deadline_ms)),
        max_fuel: (max_fuel > 0).then_some(max_fuel),
        deadline_cap,
    }
}

#[tonic::async_trait]
impl ComputeService for ComputeApi {
    async fn deploy_module(
        &self,
        request: Request<DeployModuleRequest>,
    ) -> Result<Response<DeployModuleResponse>, Status> {
        let request = request.into_inner();
        let name = (!request.name.is_empty()).then_some(request.name);
        let deployed = self
            .compute
            .deploy_module(request.wasm.to_vec(), name)
            .await?;
        Ok(Response::new(DeployModuleResponse {
            module_id: deployed.module_id.as_bytes().to_vec().into(),
            name: deployed.name.unwrap_or_default(),
            function_ids: deployed.function_ids,
            created: deployed.created,
        }))
    }

    async fn delete_module(
        &self,
        request: Request<DeleteModuleRequest>,
    ) -> Result<Response<DeleteModuleResponse>, Status> {
        let module = request.into_inner().module;
        if module.is_empty() {
            return Err(invalid_field(
                "module",
                "module: give a module name or a module id in hex",
            ));
        }
        let removed = self.compute.remove_module(&module).await?;
        Ok(Response::new(DeleteModuleResponse {
            module_id: removed.module_id.as_bytes().to_vec().into(),
            function_ids: removed.function_ids,
        }))
    }

    async fn list_functions(
        &self,
        request: Request<ListFunctionsRequest>,
    ) -> Result<Response<ListFunctionsResponse>, Status> {
        let request = request.into_inner();
        let paging = PageRequest::parse(
            Filters::new("ListFunctions"),
            request.page_size,
            &request.page_token,
        )?;
        // The compute part pages itself; its position travels inside this API's token.
        let page = self
            .compute
            .list_functions(&paging.after_text()?, paging.size)?;
        Ok(Response::new(ListFunctionsResponse {
            functions: page.functions.iter().map(function_to_proto).collect(),
            next_page_token: page
                .next_page_token
                .map(|position| paging.token(position.as_bytes()))
                .unwrap_or_default(),
        }))
    }

    async fn invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        let request = request.into_inner();
        let placement = placement(request.placement)?;
        if placement != pb::Placement::Mesh {
            let local = self
                .compute
                .invoke(invoke_request(
                    request.function_id.clone(),
                    request.input.clone(),
                    request.deadline_ms,
                    request.max_fuel,
                    Some(self.unary_deadline_cap),
                ))
                .await;
            match local {
                Err(failure) if self.falls_back_to_mesh(placement, &failure) => {}
                local => {
                    let completed = local?;
                    return Ok(Response::new(InvokeResponse {
                        output: completed.output,
                        metering: Some(self.metering(&completed.metering)),
                        remote: None,
                    }));
                }
            }
        }
        let result = self
            .invoke_on_mesh(MeshCall {
                fell_back: placement != pb::Placement::Mesh,
                deadline: mesh_deadline(request.deadline_ms, Some(self.unary_deadline_cap)),
                function_id: request.function_id,
                input: request.input,
                tier: request.tier,
                max_price_umhr: request.max_price_umhr,
                partials: None,
            })
            .await?;
        Ok(Response::new(InvokeResponse {
            output: result.output,
            metering: Some(result.metering),
            remote: Some(result.remote),
        }))
    }

    type InvokeStreamStream = BoxStream<InvokeStreamResponse>;

    async fn invoke_stream(
        &self,
        request: Request<InvokeStreamRequest>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        let request = request.into_inner();
        let placement = placement(request.placement)?;
        let local = match placement {
            pb::Placement::Mesh => None,
            _ => match self.compute.start_invocation(invoke_request(
                request.function_id.clone(),
                request.input.clone(),
                request.deadline_ms,
                request.max_fuel,
                None,
            )) {
                Err(failure) if self.falls_back_to_mesh(placement, &failure) => None,
                local => Some(local?),
            },
        };
        let Some(invocation) = local else {
            let (partials, parts) = tokio::sync::mpsc::unbounded_channel();
            let call = MeshCall {
                fell_back: placement != pb::Placement::Mesh,
                deadline: mesh_deadline(request.deadline_ms, None),
                function_id: request.function_id,
                input: request.input,
                tier: request.tier,
                max_price_umhr: request.max_price_umhr,
                partials: Some(partials),
            };
            return Ok(Response::new(self.stream_from_mesh(call, parts)));
        };
        let api = self.clone();
        // Dropping the stream (the caller went away) drops the invocation, which cancels it.
        let stream = futures::stream::unfold(Some(invocation), move |invocation| {
            let api = api.clone();
            async move {
                let mut invocation = invocation?;
                let item = match invocation.next().await? {
                    Ok(Chunk::Partial(output)) => Ok(InvokeStreamResponse {
                        output,
                        done: false,
                        metering: None,
                        remote: None,
                    }),
                    Ok(Chunk::Final { output, metering }) => Ok(InvokeStreamResponse {
                        output,
                        done: true,
                        metering: Some(api.metering(&metering)),
                        remote: None,
                    }),
                    Err(failure) => Err(Status::from(failure)),
                };
                Some((item, Some(invocation)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type ServeStream = BoxStream<ServeResponse>;

    async fn serve(
        &self,
        request: Request<Streaming<ServeRequest>>,
    ) -> Result<Response<Self::ServeStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound.message().await?;
        let Some(ServeRequest {
            kind: Some(pb::serve_request::Kind::Register(register)),
        }) = first
        else {
            return Err(RegistrationError::NotRegisterFirst.into());
        };
        let specs = register
            .functions
            .into_iter()
            .map(|spec| ServedFunctionSpec {
                name: spec.name,
                description: spec.description,
                price_per_invocation_umhr: spec.price_per_invocation_umhr,
                max_concurrency: spec.max_concurrency,
                max_input_bytes: spec.max_input_bytes,
            })
            .collect();
        // A transport error ends the stream like a disconnection does.
        let inbound = inbound
            .take_while(|item| std::future::ready(item.is_ok()))
            .filter_map(|item| std::future::ready(item.ok().map(from_provider)))
            .boxed();
        let outbound = self.compute.serve(specs, inbound)?;
        let stream = UnboundedReceiverStream::new(outbound).map(|item| match item {
            Ok(message) => Ok(to_provider(message)),
            Err(violation) => Err(Status::from(violation)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn from_provider(message: ServeRequest) -> Result<FromProvider, SessionViolation> {
    use pb::serve_request::Kind;
    match message.kind {
        Some(Kind::Output(o)) => Ok(FromProvider::Output {
            invocation_id: o.invocation_id,
            output: o.output,
        }),
        Some(Kind::Result(r)) => Ok(FromProvider::Result {
            invocation_id: r.invocation_id,
            output: r.output,
        }),
        Some(Kind::Error(e)) => Ok(FromProvider::Error {
            invocation_id: e.invocation_id,
            message: e.message,
        }),
        Some(Kind::Drain(_)) => Ok(FromProvider::Drain),
        Some(Kind::Register(_)) => Ok(FromProvider::Register),
        None => Err(SessionViolation::Malformed(
            "a ServeRequest must set one of register, output, result, error, drain".into(),
        )),
    }
}

fn to_provider(message: ToProvider) -> ServeResponse {
    use pb::serve_response::Kind;
    let kind = match message {
        ToProvider::Invocation {
            invocation_id,
            function_id,
            input,
            deadline,
        } => Kind::Invocation(pb::Invocation {
            invocation_id,
            function_id,
            input,
            // Round up: a deadline of 0 would read as "none left".
            deadline_ms: u64::try_from(deadline.as_micros().div_ceil(1000)).unwrap_or(u64::MAX),
        }),
        ToProvider::Cancel {
            invocation_id,
            reason,
        } => Kind::Cancel(pb::InvocationCancel {
            invocation_id,
            reason: cancel_reason(reason) as i32,
        }),
    };
    ServeResponse { kind: Some(kind) }
}

fn cancel_reason(reason: CancelReason) -> pb::CancelReason {
    match reason {
        CancelReason::DeadlineExceeded => pb::CancelReason::DeadlineExceeded,
        CancelReason::CallerGone => pb::CancelReason::CallerGone,
        CancelReason::CallerTooSlow => pb::CancelReason::CallerTooSlow,
        CancelReason::OutputTooLarge => pb::CancelReason::OutputTooLarge,
    }
}

/// The proto form of a function kind (also used by the node's event stream).
pub fn kind_to_proto(kind: FunctionKind) -> pb::FunctionKind {
    match kind {
        FunctionKind::Wasm => pb::FunctionKind::Wasm,
        FunctionKind::Served => pb::FunctionKind::Served,
    }
}

fn function_to_proto(info: &FunctionInfo) -> pb::FunctionInfo {
    use pb::function_price::Kind;
    pb::FunctionInfo {
        function_id: info.function_id.clone(),
        function_hash: info.function_hash.to_vec().into(),
        kind: kind_to_proto(info.kind) as i32,
        description: info.description.clone(),
        price: Some(pb::FunctionPrice {
            kind: Some(match info.price {
                Price::PerInvocation(umhr) => Kind::PerInvocationUmhr(umhr),
                Price::PerMillionFuel(umhr) => Kind::PerMillionFuelUmhr(umhr),
            }),
        }),
        max_concurrency: info.max_concurrency,
        max_input_bytes: info.max_input_bytes,
        in_flight: info.in_flight,
        queued: info.queued,
        module_id: info
            .module_id
            .map(|id| id.as_bytes().to_vec())
            .unwrap_or_default()
            .into(),
        available_since_unix_ms: info.available_since_unix_ms,
    }
}
