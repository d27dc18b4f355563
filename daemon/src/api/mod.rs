//! The gRPC API: the one place that assembles the server — services, health, reflection, tower
//! layers, listeners, access control and graceful shutdown.
//!
//! Every listener serves the same routes. The Unix socket is owner-only (file permissions are
//! its access control); TCP listeners check bearer tokens and their scopes, and listeners off
//! loopback add TLS. All listeners share one concurrency budget, so load shedding is
//! node-wide. The access check runs before load shedding (see [`auth`]).

pub mod admin;
mod auth;
mod call_telemetry;
pub mod compute;
pub mod control;
mod deadline;
pub mod health;
pub mod ledger;
pub mod market;
pub mod messaging;
pub mod node;
mod overload;
mod paging;
mod request_id;
pub mod scopes;
pub mod status;
pub mod storage;
mod streams;
pub mod tls;
pub mod tokens;
pub mod transport;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use mehr_proto::v1::{
    admin_service_server::AdminServiceServer, compute_service_server::ComputeServiceServer,
    ledger_service_server::LedgerServiceServer, market_service_server::MarketServiceServer,
    messaging_service_server::MessagingServiceServer, node_service_server::NodeServiceServer,
    storage_service_server::StorageServiceServer, transport_service_server::TransportServiceServer,
};
use tokio::{net::UnixListener, task::JoinHandle};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::RoutesBuilder,
    transport::{Server, ServerTlsConfig, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{
    ServiceBuilder,
    layer::util::{Identity, Stack},
};
use tower_http::{
    classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier},
    trace::{GrpcMakeClassifier, TraceLayer},
};

pub use self::{
    admin::{AdminApi, AdminParts},
    call_telemetry::ApiCallMetrics,
    compute::ComputeApi,
    market::MarketApi,
    node::{Endpoint, NodeApi, NodeFacts},
    storage::StorageApi,
};
use self::{
    auth::AccessLayer, call_telemetry::CallTelemetryLayer, control::ApiControl,
    deadline::DeadlineLayer, overload::OverloadAnswerLayer, streams::StreamLimitLayer,
    tls::TlsMaterial, tokens::TokenRegistry,
};
use crate::config::{ApiConfig, TlsMode};

/// HTTP/2 streams one API connection may hold open at once. The request concurrency limit
/// releases its permit when a call's response starts, so a streaming call (WatchEvents,
/// Listen, Serve, Get) holds none while it runs; this caps them per connection instead.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// HTTP/2 frames clients may send, up to: a served function's 700 KB result crosses as one
/// frame instead of 44 of the default 16 KiB (each a wake-up on both sides).
const MAX_FRAME_BYTES: u32 = 4 * 1024 * 1024;
/// Flow-control windows granted to each client, per stream and per connection (the most a
/// client can have in flight unread): large inputs and results flow without WINDOW_UPDATE
/// round trips.
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Calls (and HTTP/2 streams) one connection to the health listener may have at once.
const HEALTH_CALLS_PER_CONNECTION: usize = 4;
/// How long a health Check may take before it is answered DEADLINE_EXCEEDED.
const HEALTH_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address or socket path.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reflection could not load the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The TLS configuration was refused by the server.
    #[error("cannot configure TLS: {0}")]
    TlsConfig(tonic::transport::Error),
}

/// A bound listener, not serving yet.
struct BoundListener {
    incoming: Incoming,
    tls: bool,
    requires_token: bool,
}

enum Incoming {
    Unix(UnixListener),
    Tcp(TcpIncoming),
}

/// Listeners bound before the node's services are built, so that the actual addresses (port 0
/// picks a free port) are known to GetInfo.
pub struct Listeners {
    bound: Vec<BoundListener>,
    /// The plaintext `grpc.health.v1`-only listener (`api.health_listen`).
    health: Option<TcpIncoming>,
    health_address: Option<SocketAddr>,
    socket_path: Option<PathBuf>,
    endpoints: Vec<Endpoint>,
}

impl Listeners {
    /// Binds the Unix socket (replacing a stale socket file: the data dir lock proves no live
    /// daemon owns it) and the TCP listeners of `config`.
    pub fn bind(config: &ApiConfig, socket_path: &Path) -> Result<Self, ApiError> {
        let mut endpoints = Vec::new();
        let mut bound = Vec::new();
        let mut unix_path = None;
        if config.unix_socket {
            let bind_err = |source| ApiError::Bind {
                address: socket_path.display().to_string(),
                source,
            };
            match std::fs::remove_file(socket_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bind_err(e)),
                _ => {}
            }
            let listener = UnixListener::bind(socket_path).map_err(bind_err)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o600))
                .map_err(bind_err)?;
            endpoints.push(Endpoint {
                kind: mehr_proto::v1::ApiEndpointKind::Unix,
                address: socket_path.display().to_string(),
                tls: false,
                requires_token: false,
            });
            bound.push(BoundListener {
                incoming: Incoming::Unix(listener),
                tls: false,
                requires_token: false,
            });
            unix_path = Some(socket_path.to_path_buf());
        }

        for addr in &config.listen {
            let incoming = TcpIncoming::bind(*addr)
                .map_err(|source| ApiError::Bind {
                    address: addr.to_string(),
                    source,
                })?
                .with_nodelay(Some(true));
            let local: SocketAddr = incoming.local_addr().map_err(|source| ApiError::Bind {
                address: addr.to_string(),
                source,
            })?;
            let tls = match config.tls {
                TlsMode::Always => true,
                TlsMode::Auto => !addr.ip().is_loopback(),
                TlsMode::Never => false,
            };
            endpoints.push(Endpoint {
                kind: mehr_proto::v1::ApiEndpointKind::Tcp,
                address: local.to_string(),
                tls,
                requires_token: true,
            });
            bound.push(BoundListener {
                incoming: Incoming::Tcp(incoming),
                tls,
                requires_token: true,
            });
        }
        let (health, health_address) =
            match config.health_listen_addr().map_err(|e| ApiError::Bind {
                address: config.health_listen.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })? {
                Some(addr) => {
                    let bind_err = |source| ApiError::Bind {
                        address: addr.to_string(),
                        source,
                    };
                    let incoming = TcpIncoming::bind(addr).map_err(bind_err)?;
                    let local = incoming.local_addr().map_err(bind_err)?;
                    (Some(incoming), Some(local))
                }
                None => (None, None),
            };
        Ok(Listeners {
            bound,
            health,
            health_address,
            socket_path: unix_path,
            endpoints,
        })
    }

    /// Where `grpc.health.v1` alone is served in plaintext, when `api.health_listen` is set.
    pub fn health_address(&self) -> Option<SocketAddr> {
        self.health_address
    }

    /// Where the API will be served.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// True when some TCP listener needs TLS material.
    pub fn needs_tls(&self) -> bool {
        self.bound.iter().any(|l| l.tls)
    }
}

/// The services the API serves. Each service is a field here and a line in `register`.
#[derive(Clone)]
pub struct Services {
    /// `mehr.v1.NodeService`.
    pub node: NodeApi,
    /// `mehr.v1.TransportService`.
    pub transport: transport::TransportApi,
    /// `mehr.v1.MessagingService`.
    pub messaging: messaging::MessagingApi,
    /// `mehr.v1.ComputeService`.
    pub compute: ComputeApi,
    /// `mehr.v1.StorageService`.
    pub storage: StorageApi,
    /// `mehr.v1.LedgerService`.
    pub ledger: ledger::LedgerApi,
    /// `mehr.v1.MarketService`.
    pub market: MarketApi,
    /// `mehr.v1.AdminService`.
    pub admin: AdminApi,
}

impl Services {
    fn register(&self, routes: &mut RoutesBuilder) {
        routes.add_service(NodeServiceServer::new(self.node.clone()));
        routes.add_service(TransportServiceServer::new(self.transport.clone()));
        routes.add_service(
            MessagingServiceServer::new(self.messaging.clone())
                .max_decoding_message_size(self.messaging.max_request_bytes()),
        );
        routes.add_service(self.compute.clone().into_server());
        routes.add_service(StorageServiceServer::new(self.storage.clone()));
        routes.add_service(LedgerServiceServer::new(self.ledger.clone()));
        routes.add_service(self.market.clone().into_server());
        routes.add_service(AdminServiceServer::new(self.admin.clone()));
    }

    async fn set_serving(&self, health: &HealthReporter, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in [
            "",
            <NodeServiceServer<NodeApi> as tonic::server::NamedService>::NAME,
            <TransportServiceServer<transport::TransportApi> as tonic::server::NamedService>::NAME,
            <MessagingServiceServer<messaging::MessagingApi> as tonic::server::NamedService>::NAME,
            <ComputeServiceServer<ComputeApi> as tonic::server::NamedService>::NAME,
            <StorageServiceServer<StorageApi> as tonic::server::NamedService>::NAME,
            <LedgerServiceServer<ledger::LedgerApi> as tonic::server::NamedService>::NAME,
            <MarketServiceServer<MarketApi> as tonic::server::NamedService>::NAME,
            <AdminServiceServer<AdminApi> as tonic::server::NamedService>::NAME,
            health::READINESS,
        ] {
            health.set_service_status(name, status).await;
        }
    }
}

/// The running API servers.
pub struct RunningApi {
    health: HealthReporter,
    health_watch: JoinHandle<()>,
    services: Services,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    socket_path: Option<PathBuf>,
}

/// Starts serving `services` on `listeners` until `shutdown` is cancelled. TCP callers need a
/// token of `tokens`; `control` holds the drain and the live settings; every call is counted
/// and timed into `call_metrics` when given (the metrics endpoint is on).
pub async fn serve(
    listeners: Listeners,
    mut services: Services,
    tokens: Arc<TokenRegistry>,
    control: Arc<ApiControl>,
    tls: Option<TlsMaterial>,
    call_metrics: Option<ApiCallMetrics>,
    shutdown: CancellationToken,
) -> Result<RunningApi, ApiError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    services.set_serving(&health, true).await;
    services.admin = services.admin.clone().with_reporter(health.clone());
    let (health_inputs, board) = services.admin.health();
    board.refresh(&health_inputs, &health).await;
    let health_watch = tokio::spawn(board.watch(health_inputs, health.clone()));

    let mut builder = RoutesBuilder::default();
    builder.add_service(health_service.clone());
    // Both reflection versions: grpcurl and older tools still ask v1alpha.
    builder.add_service(reflection().build_v1()?);
    builder.add_service(reflection().build_v1alpha()?);
    services.register(&mut builder);
    let routes = builder.routes();

    let mut servers = Vec::new();
    for listener in listeners.bound {
        let mut server = Server::builder()
            .max_frame_size(MAX_FRAME_BYTES)
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
        if listener.tls {
            let material = tls
                .as_ref()
                .expect("Listeners::needs_tls was checked by the caller");
            let identity =
                tonic::transport::Identity::from_pem(&material.cert_pem, &material.key_pem);
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity))
                .map_err(ApiError::TlsConfig)?;
        }
        let tokens = listener.requires_token.then(|| tokens.clone());
        let router = server
            .layer(guard_layers(
                CallTelemetryLayer::new(call_metrics.clone()),
                AccessLayer::new(tokens, control.clone()),
                &control,
            ))
            .add_routes(routes.clone());
        let stop = shutdown.clone().cancelled_owned();
        servers.push(match listener.incoming {
            Incoming::Unix(unix) => tokio::spawn(
                router.serve_with_incoming_shutdown(UnixListenerStream::new(unix), stop),
            ),
            Incoming::Tcp(tcp) => tokio::spawn(router.serve_with_incoming_shutdown(tcp, stop)),
        });
    }
    if let Some(incoming) = listeners.health {
        // Health alone, without token or TLS (probes speak neither): a few calls at a time
        // per connection and a short timeout, so a flood here costs little and reaches
        // nothing else.
        let router = Server::builder()
            .concurrency_limit_per_connection(HEALTH_CALLS_PER_CONNECTION)
            .timeout(HEALTH_CALL_TIMEOUT)
            .max_concurrent_streams(Some(HEALTH_CALLS_PER_CONNECTION as u32))
            .add_service(health_service);
        let stop = shutdown.clone().cancelled_owned();
        servers.push(tokio::spawn(
            router.serve_with_incoming_shutdown(incoming, stop),
        ));
    }
    Ok(RunningApi {
        health,
        health_watch,
        services,
        servers,
        socket_path: listeners.socket_path,
    })
}

/// The stack [`guard_layers`] builds (tower nests the outermost layer deepest).
type GuardLayers = Stack<
    DeadlineLayer,
    Stack<
        GlobalConcurrencyLimitLayer,
        Stack<
            tower::load_shed::LoadShedLayer,
            Stack<
                OverloadAnswerLayer,
                Stack<
                    StreamLimitLayer,
                    Stack<
                        AccessLayer,
                        Stack<TraceLayer<GrpcMakeClassifier>, Stack<CallTelemetryLayer, Identity>>,
                    >,
                >,
            >,
        >,
    >,
>;

/// The layers around every service, outermost first: the call metrics (so refused and shed
/// calls are counted too), the trace, then access (token, scope, drain) — before load shedding
/// and the concurrency limits, so that refused calls never hold a permit — then the stream
/// limit (a server-streaming call holds its permit until its stream ends, which the
/// concurrency limit's permit does not), the answer to shed calls, the shedding, the
/// node-wide limit and the deadline.
fn guard_layers(
    call_telemetry: CallTelemetryLayer,
    access: AccessLayer,
    control: &Arc<ApiControl>,
) -> ServiceBuilder<GuardLayers> {
    ServiceBuilder::new()
        .layer(call_telemetry)
        .layer(trace_layer())
        .layer(access)
        .layer(StreamLimitLayer::new(control.clone()))
        .layer(OverloadAnswerLayer)
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(
            control.permits(),
        ))
        .layer(DeadlineLayer::new(control.clone()))
}

/// Logs every call; only the codes that mean this node failed (INTERNAL, UNKNOWN, DATA_LOSS,
/// UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED) are logged as errors. A
/// caller's mistake — a missing object, a bad argument, a refused token, a cancelled call — is
/// an answer, not a server error, and is logged with the other responses at debug level.
fn trace_layer() -> TraceLayer<GrpcMakeClassifier> {
    let callers_codes = [
        GrpcCode::Cancelled,
        GrpcCode::InvalidArgument,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unauthenticated,
    ];
    let classifier = callers_codes.into_iter().fold(
        GrpcErrorsAsFailures::new(),
        GrpcErrorsAsFailures::with_success,
    );
    TraceLayer::new(SharedClassifier::new(classifier))
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mehr_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

impl RunningApi {
    /// Marks the node NOT_SERVING for health checkers (the first step of shutdown).
    pub async fn set_not_serving(&self) {
        self.health_watch.abort();
        self.services.set_serving(&self.health, false).await;
    }

    /// Waits for every server to finish its in-flight requests, at most `grace`; servers still
    /// busy after that are aborted. Removes the socket file.
    pub async fn drain(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        for mut server in self.servers {
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "API server task failed"),
                Err(_) => {
                    tracing::warn!("API server still busy after {grace:?}; aborting its requests");
                    server.abort();
                }
            }
        }
        if let Some(path) = self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::Arc, time::Duration};

    use tokio::sync::Notify;
    use tonic_types::StatusExt;
    use tower::ServiceExt;

    use super::*;

    const ADMIN: &str = "cc00000000000000000000000000000000000000000000000000000000000000";

    fn call(bearer: Option<&str>) -> http::Request<tonic::body::Body> {
        let mut builder = http::Request::builder().uri("/mehr.v1.NodeService/GetInfo");
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(tonic::body::Body::empty()).unwrap()
    }

    fn status_of(response: &http::Response<impl Sized>) -> (tonic::Code, String) {
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        let reason = status.get_details_error_info().unwrap().reason;
        (status.code(), reason)
    }

    /// The one permit is held by an authorised call; a flood of calls without a token is still
    /// answered UNAUTHENTICATED (not shed, and holding no permit), and an authorised call is
    /// shed with OVERLOADED, which shows the limit is in force behind the access check.
    #[tokio::test]
    async fn the_token_check_runs_before_load_shedding() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenRegistry::open(dir.path(), ADMIN).unwrap();
        let control = ApiControl::new(Duration::from_secs(30), 1);
        let gate = Arc::new(Notify::new());
        let handler = {
            let gate = gate.clone();
            tower::service_fn(move |_: http::Request<tonic::body::Body>| {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
                }
            })
        };
        let service = guard_layers(
            CallTelemetryLayer::new(None),
            AccessLayer::new(Some(tokens), control.clone()),
            &control,
        )
        .service(handler);

        let held = tokio::spawn(service.clone().oneshot(call(Some(ADMIN))));
        for _ in 0..1000 {
            if control.in_flight() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            control.in_flight(),
            1,
            "the authorised call holds the permit"
        );

        let flood = (0..200).map(|i| {
            let bearer = (i % 2 == 0).then_some("forged");
            service.clone().oneshot(call(bearer))
        });
        for answer in futures::future::join_all(flood).await {
            let (code, reason) = status_of(&answer.unwrap());
            assert_eq!(code, tonic::Code::Unauthenticated);
            assert!(
                reason == "TOKEN_MISSING" || reason == "TOKEN_INVALID",
                "{reason}"
            );
        }
        assert_eq!(control.in_flight(), 1, "refused calls took no permit");

        let shed = service.clone().oneshot(call(Some(ADMIN))).await.unwrap();
        assert_eq!(
            status_of(&shed),
            (tonic::Code::ResourceExhausted, "OVERLOADED".to_string())
        );

        gate.notify_one();
        let answered = held.await.unwrap().unwrap();
        assert!(answered.headers().get("grpc-status").is_none());
        assert_eq!(control.in_flight(), 0);
    }
}
