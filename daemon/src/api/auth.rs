//! Bearer-token access control for the TCP API (the Unix socket is guarded by file
//! permissions instead). Health checks and reflection stay open so that load balancers,
//! Kubernetes probes and `grpcurl list` work without the token; they reveal nothing private.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use super::status::{Reason, failure};

/// Path prefixes that need no token.
const OPEN_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.",
    "/grpc.reflection.v1alpha.",
];

/// Adds [`BearerAuth`] to a service stack.
#[derive(Clone)]
pub(super) struct BearerAuthLayer {
    token: Arc<str>,
}

impl BearerAuthLayer {
    /// Requires `authorization: Bearer <token>` on every call but the open ones.
    pub(super) fn new(token: &str) -> Self {
        BearerAuthLayer {
            token: token.into(),
        }
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            token: self.token.clone(),
        }
    }
}

/// Answers `UNAUTHENTICATED` to calls without the right bearer token.
#[derive(Clone)]
pub(super) struct BearerAuth<S> {
    inner: S,
    token: Arc<str>,
}

impl<S> BearerAuth<S> {
    fn check(&self, request: &http::Request<impl Sized>) -> Result<(), (Reason, &'static str)> {
        if OPEN_PATHS
            .iter()
            .any(|open| request.uri().path().starts_with(open))
        {
            return Ok(());
        }
        let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
            return Err((
                Reason::TokenMissing,
                "missing bearer token: send the header `authorization: Bearer <token>`; \
                        the token is the file api.token in the node's data dir",
            ));
        };
        let presented = header
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .unwrap_or_default();
        if bool::from(presented.ct_eq(self.token.as_bytes())) {
            Ok(())
        } else {
            Err((
                Reason::TokenInvalid,
                "invalid bearer token: it does not match api.token in the node's data dir",
            ))
        }
    }
}

impl<S, B> Service<http::Request<B>> for BearerAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.check(&request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err((reason, message)) => {
                let response = failure(reason, message).into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, auth: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(path);
        if let Some(value) = auth {
            builder = builder.header("authorization", value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn token_checks() {
        let auth = BearerAuth {
            inner: (),
            token: "secret".into(),
        };
        assert!(
            auth.check(&request(
                "/mehr.v1.NodeService/GetInfo",
                Some("Bearer secret")
            ))
            .is_ok()
        );
        let missing = auth
            .check(&request("/mehr.v1.NodeService/GetInfo", None))
            .unwrap_err();
        assert_eq!(missing.0, Reason::TokenMissing);
        assert!(missing.1.contains("missing bearer token"));
        let wrong = auth
            .check(&request(
                "/mehr.v1.NodeService/GetInfo",
                Some("Bearer nope"),
            ))
            .unwrap_err();
        assert_eq!(wrong.0, Reason::TokenInvalid);
        assert!(wrong.1.contains("invalid bearer token"));
        assert!(
            auth.check(&request("/mehr.v1.NodeService/GetInfo", Some("secret")))
                .is_err()
        );
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
    }
}
