//! Access control, one layer for every listener: on TCP the bearer token and the scope the
//! method needs ([`super::scopes::METHOD_SCOPES`]); on every listener the drain (a drained
//! node refuses calls that start new work). The Unix socket needs no token: it is owner-only,
//! so its callers are the node's owner, with the admin scope.
//!
//! The layer sits outside load shedding and the concurrency limit, and it does not poll the
//! services inside it until a call is let through: a refused call never holds one of the
//! `api.max_concurrent_requests` permits, so a flood of calls without a valid token cannot
//! crowd out callers that have one. Health checks and reflection stay open (load balancers,
//! Kubernetes probes and `grpcurl list` send no token; they reveal nothing private).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tower::{Layer, Service, ServiceExt};

use super::{
    control::ApiControl,
    scopes::{Scope, is_open, required_scope},
    status::{Reason, failure, failure_with},
    tokens::{Refusal, TokenRegistry},
};

/// Adds [`Access`] to a service stack.
#[derive(Clone)]
pub(super) struct AccessLayer {
    /// `None` on the Unix socket: no token needed.
    tokens: Option<Arc<TokenRegistry>>,
    control: Arc<ApiControl>,
}

impl AccessLayer {
    /// Checks tokens against `tokens` (when set) and the drain of `control`.
    pub(super) fn new(tokens: Option<Arc<TokenRegistry>>, control: Arc<ApiControl>) -> Self {
        AccessLayer { tokens, control }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Access {
            inner,
            tokens: self.tokens.clone(),
            control: self.control.clone(),
        }
    }
}

/// Answers UNAUTHENTICATED to calls without a valid token, PERMISSION_DENIED to calls whose
/// token lacks the method's scope, and UNAVAILABLE to new work on a drained node.
#[derive(Clone)]
pub(super) struct Access<S> {
    inner: S,
    tokens: Option<Arc<TokenRegistry>>,
    control: Arc<ApiControl>,
}

impl<S> Access<S> {
    fn check(&self, request: &http::Request<impl Sized>) -> Result<(), tonic::Status> {
        let path = request.uri().path();
        if is_open(path) {
            return Ok(());
        }
        let needed = required_scope(path);
        if let Some(tokens) = &self.tokens {
            let held = authenticate(tokens, request)?;
            let Some(needed) = needed else {
                return Err(failure_with(
                    Reason::ScopeDenied,
                    format!("{path} is not a method of this node's API; no scope grants it"),
                    &[("method", path.to_string())],
                ));
            };
            if !needed.granted_by(&held) {
                let held: Vec<&str> = held.iter().map(|s| s.name()).collect();
                return Err(failure_with(
                    Reason::ScopeDenied,
                    format!(
                        "{path} needs a token with the {} scope (this token has: {}); \
                         mint one with `mehr token create --scope {}`",
                        needed.name(),
                        held.join(", "),
                        needed.name()
                    ),
                    &[
                        ("method", path.to_string()),
                        ("required_scope", needed.name().to_string()),
                    ],
                ));
            }
        }
        if self.control.draining() && needed.is_some_and(Scope::starts_work) {
            return Err(failure_with(
                Reason::Draining,
                format!("the node is drained and takes no new work ({path}); call another node"),
                &[("method", path.to_string())],
            ));
        }
        Ok(())
    }
}

/// The scopes of the request's bearer token.
fn authenticate(
    tokens: &TokenRegistry,
    request: &http::Request<impl Sized>,
) -> Result<Vec<Scope>, tonic::Status> {
    let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
        return Err(failure(
            Reason::TokenMissing,
            "missing bearer token: send the header `authorization: Bearer <token>`; \
             the admin token is the file api.token in the node's data dir",
        ));
    };
    let presented = header
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .unwrap_or_default();
    tokens
        .authenticate(presented)
        .map_err(|refusal| match refusal {
            Refusal::Invalid => failure(
                Reason::TokenInvalid,
                "invalid bearer token: it is neither api.token in the node's data dir nor a \
             token minted by `mehr token create` (revoked tokens are invalid)",
            ),
            Refusal::Expired => failure(
                Reason::TokenExpired,
                "the bearer token has expired; mint a new one with `mehr token create`",
            ),
        })
}

impl<S, B> Service<http::Request<B>> for Access<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    /// Always ready: the inner services (and the permit they take) are only polled for calls
    /// that pass the check.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.check(&request) {
            Ok(()) => {
                let fresh = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, fresh);
                Box::pin(inner.oneshot(request))
            }
            Err(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "bb00000000000000000000000000000000000000000000000000000000000000";

    fn request(path: &str, auth: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(path);
        if let Some(value) = auth {
            builder = builder.header("authorization", value);
        }
        builder.body(()).unwrap()
    }

    fn reason(status: &tonic::Status) -> String {
        use tonic_types::StatusExt;
        status.get_details_error_info().unwrap().reason
    }

    fn access(dir: &std::path::Path, tcp: bool) -> (Access<()>, Arc<TokenRegistry>) {
        let registry = TokenRegistry::open(dir, ADMIN).unwrap();
        let access = Access {
            inner: (),
            tokens: tcp.then(|| registry.clone()),
            control: ApiControl::new(std::time::Duration::from_secs(30), 8),
        };
        (access, registry)
    }

    #[test]
    fn tokens_are_checked_and_health_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = access(dir.path(), true);
        let info = "/mehr.v1.NodeService/GetInfo";
        assert!(
            auth.check(&request(info, Some(&format!("Bearer {ADMIN}"))))
                .is_ok()
        );
        let missing = auth.check(&request(info, None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert_eq!(reason(&missing), "TOKEN_MISSING");
        let wrong = auth.check(&request(info, Some("Bearer nope"))).unwrap_err();
        assert_eq!(reason(&wrong), "TOKEN_INVALID");
        assert!(auth.check(&request(info, Some(ADMIN))).is_err());
        assert!(
            auth.check(&request("/grpc.health.v1.Health/Check", None))
                .is_ok()
        );
        assert!(
            auth.check(&request(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None
            ))
            .is_ok()
        );
        // Deny by default: a path missing from the table is refused even to admin.
        let unknown = auth
            .check(&request(
                "/mehr.v1.NodeService/NoSuchMethod",
                Some(&format!("Bearer {ADMIN}")),
            ))
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied);
    }

    /// Each scope against a method of each kind: only the scope it names, or admin, passes.
    #[test]
    fn each_scope_reaches_only_its_methods() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, registry) = access(dir.path(), true);
        let probes = [
            ("/mehr.v1.LedgerService/GetBalance", Scope::Readonly),
            ("/mehr.v1.LedgerService/Pay", Scope::Pay),
            ("/mehr.v1.ComputeService/Invoke", Scope::Invoke),
            ("/mehr.v1.MessagingService/Send", Scope::Invoke),
            ("/mehr.v1.AdminService/CreateToken", Scope::Admin),
            ("/mehr.v1.ComputeService/DeployModule", Scope::Admin),
        ];
        for held in Scope::ALL {
            let (_, secret) = registry.create(vec![held], String::new(), 0).unwrap();
            let bearer = format!("Bearer {secret}");
            for (path, needed) in probes {
                let result = auth.check(&request(path, Some(&bearer)));
                if held == Scope::Admin || held == needed {
                    assert!(result.is_ok(), "{held:?} on {path}: {result:?}");
                } else {
                    let status = result.unwrap_err();
                    assert_eq!(
                        status.code(),
                        tonic::Code::PermissionDenied,
                        "{held:?} {path}"
                    );
                    assert_eq!(reason(&status), "SCOPE_DENIED");
                    use tonic_types::StatusExt;
                    let info = status.get_details_error_info().unwrap();
                    assert_eq!(info.metadata["required_scope"], needed.name());
                    assert_eq!(info.metadata["method"], path);
                }
            }
        }
    }

    #[test]
    fn a_drained_node_refuses_new_work_only() {
        let dir = tempfile::tempdir().unwrap();
        for tcp in [true, false] {
            let (auth, _) = access(dir.path(), tcp);
            auth.control.set_draining(true);
            let bearer = format!("Bearer {ADMIN}");
            let invoke = auth
                .check(&request("/mehr.v1.ComputeService/Invoke", Some(&bearer)))
                .unwrap_err();
            assert_eq!(invoke.code(), tonic::Code::Unavailable);
            assert_eq!(reason(&invoke), "DRAINING");
            assert!(
                auth.check(&request("/mehr.v1.LedgerService/Pay", Some(&bearer)))
                    .is_err()
            );
            assert!(
                auth.check(&request("/mehr.v1.NodeService/GetInfo", Some(&bearer)))
                    .is_ok()
            );
            assert!(
                auth.check(&request("/mehr.v1.AdminService/Resume", Some(&bearer)))
                    .is_ok()
            );
            auth.control.set_draining(false);
            assert!(
                auth.check(&request("/mehr.v1.ComputeService/Invoke", Some(&bearer)))
                    .is_ok()
            );
        }
    }
}
