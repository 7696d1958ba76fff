//! What every DataFlow HTTP function shares: the stable JSON error shape
//! `{"error": code, "message": text[, "parameter": name]}`, the 404/405 fallbacks, and query
//! parameters checked against each endpoint's list.

pub mod auth;
pub mod openapi;
pub mod spec_check;
pub mod wire;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub parameter: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            parameter: None,
        }
    }
    /// 400 `invalid_parameter` naming the parameter.
    pub fn bad_param(parameter: &str, message: impl Into<String>) -> Self {
        Self {
            parameter: Some(parameter.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }
    /// 503 with a specific code: the request was fine, a dependency is not ready.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = openapi::ErrorBody {
            error: self.code.into(),
            message: self.message,
            parameter: self.parameter,
        };
        (self.status, Json(body)).into_response()
    }
}

/// A handler's typed answer, written with its object keys in sorted order: serde_json's own map
/// order, which these APIs answered in before their answers had types, so the bytes clients see
/// did not change with the types.
pub struct Sorted<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Sorted<T> {
    fn into_response(self) -> Response {
        match value_of(&self.0) {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// A typed answer as a JSON value (keys sorted), for handlers that cache what they answer.
pub fn value_of<T: serde::Serialize>(answer: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(answer).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not supported on {} (see /openapi.json)",
            uri.path()
        ),
    )
}

/// The OpenAPI 3.1 description of every route of the HTTP API, both functions' (one document,
/// tested against both routers).
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// A function's routes (or several functions' merged) as a complete API: `/openapi.json` and
/// the JSON 404 and 405 answers.
pub fn finish(routes: axum::Router) -> axum::Router {
    routes
        .route("/openapi.json", axum::routing::get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// A parsed query string, every parameter checked against the endpoint's list.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_param(
                    k,
                    format!("unknown parameter '{k}'; allowed: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(Self(pairs))
    }
    /// A parameter given at most once.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(ApiError::bad_param(
                name,
                format!("'{name}' may be given once"),
            ));
        }
        Ok(first)
    }
    /// Every value of a repeatable parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// A whole number in `range`, or `default` when absent.
    pub fn number(
        &self,
        name: &str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, ApiError> {
        match self.one(name)? {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    ApiError::bad_param(
                        name,
                        format!(
                            "'{name}' must be a whole number from {} to {}, got '{v}'",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }
}

/// Serves the router: API Gateway events inside Lambda, plain HTTP on 127.0.0.1:`PORT` (default
/// 3000) elsewhere, so one binary also runs under `cargo lambda watch` or by hand.
pub async fn serve(app: axum::Router) -> Result<(), lambda_http::Error> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_http::run(app).await;
    }
    let addr = format!(
        "127.0.0.1:{}",
        std::env::var("PORT").unwrap_or_else(|_| "3000".into())
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "serving");
    axum::serve(wire::JsonErrorListener(listener), app).await?;
    Ok(())
}
