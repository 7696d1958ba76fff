//! API keys on the local server (`AUTH_MODE=keys`): the same check the Lambda authorizer runs
//! in AWS ([`dataflow_keys::authorize`]), in front of every route that needs a scope. The key is
//! never logged; the key's public id is.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dataflow_keys::{authorize, required_scope, AuthError, KeyStore, HEADER};

use crate::ApiError;

/// `router` with every non-public route behind a key of the route's scope.
pub fn with_keys(router: axum::Router, store: Arc<dyn KeyStore>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(store, check))
}

async fn check(State(store): State<Arc<dyn KeyStore>>, req: Request, next: Next) -> Response {
    let Some(needs) = required_scope(req.method().as_str(), req.uri().path()) else {
        return next.run(req).await;
    };
    let presented = req.headers().get(HEADER).and_then(|v| v.to_str().ok());
    match authorize(store.as_ref(), presented, needs).await {
        Ok(key) => {
            tracing::debug!(key_id = %key.id, scope = key.scope.as_str(), "authorized");
            next.run(req).await
        }
        Err(AuthError::Denied(d)) => {
            let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            ApiError::new(status, d.code(), d.to_string()).into_response()
        }
        Err(AuthError::Store(e)) => {
            tracing::error!(error = %e, "key store unavailable");
            ApiError::unavailable("keys_unavailable", "API keys cannot be checked right now")
                .into_response()
        }
    }
}
