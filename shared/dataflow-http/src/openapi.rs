//! The OpenAPI document is made from the code. Each function crate describes its own operations
//! with `#[utoipa::path]` on its handlers and the types its handlers answer with; this module
//! merges them and adds what every operation shares: the error shape, `GET /openapi.json`, and
//! the `x-api-key` security with the scopes [`dataflow_keys::required_scope`] (the authorizer's
//! own check) asks of each operation, with its 401 and 403. `dataflow openapi` prints the
//! document; `openapi.json` beside this crate is that output, committed and served, and a test
//! in `cli` fails when it is stale.

use dataflow_keys::{required_scope, Scope};
use serde::Serialize;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, InfoBuilder, OpenApi, OpenApiBuilder, RefOr, Response};
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A stable code.
    #[schema(examples(
        "invalid_parameter",
        "analytics_not_ready",
        "index_not_built",
        "bad_path",
        "not_found"
    ))]
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The query parameter at fault, on a 400 `invalid_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub parameter: Option<String>,
}

/// The 400 of an operation with query parameters, as `Params` answers it.
pub const BAD_PARAMETER: &str = "Bad parameter (named in `parameter`).";
/// The 400 of an operation without any (`Params` refuses every parameter).
pub const NO_PARAMETERS: &str = "A query parameter was given (this operation takes none).";

/// The name of the security scheme in the document.
pub const SCHEME: &str = "apiKey";

const TITLE: &str = "DataFlow API";
const ABOUT: &str = "Daily event metrics from the DataFlow Parquet lake, and search over the docs corpus. One HTTP API: the analytics, ingest and search functions behind one API Gateway. Errors share one shape: {error, message, parameter?}.";
const KEY_ABOUT: &str = "An API key (`dataflow keys create --scope ingest|read|admin`). Each operation lists the scopes that may call it: `ingest` for POST /events, `read` for the analytics and search reads, `admin` for everything, including document uploads and deletions. A missing, unknown or revoked key is 401, a key without the scope 403.";

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json"))
)]
#[allow(dead_code)] // the route is `crate::finish`'s; this is its description
fn openapi_json() {}

#[derive(utoipa::OpenApi)]
#[openapi(paths(openapi_json))]
struct Shared;

/// Puts a function's operations under its tag (the function's name in the API).
pub fn tagged(mut doc: OpenApi, tag: &str) -> OpenApi {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.tags = Some(vec![tag.to_owned()]);
        }
    }
    doc
}

/// The whole API from its functions' parts: their operations and schemas, the shared ones, and
/// every operation's security.
pub fn document(parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(TITLE)
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(ABOUT))
                .build(),
        )
        .build();
    doc.merge(tagged(<Shared as utoipa::OpenApi>::openapi(), "meta"));
    for part in parts {
        doc.merge(part);
    }
    secure(&mut doc);
    doc
}

/// The document as committed and served (with a final newline): pretty JSON, keys in a stable
/// order.
pub fn to_json(doc: &OpenApi) -> Result<String, serde_json::Error> {
    doc.to_pretty_json()
}

/// Sets each operation's security from the key check, and its 401 and 403 answers.
fn secure(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Components::new);
    components.security_schemes.insert(
        SCHEME.into(),
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-api-key",
            KEY_ABOUT,
        ))),
    );
    components.schemas.insert(
        <ErrorBody as ToSchema>::name().into_owned(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );
    for (template, item) in doc.paths.paths.iter_mut() {
        let path = concrete(template);
        for (method, op) in [
            ("GET", &mut item.get),
            ("PUT", &mut item.put),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
        ] {
            let Some(op) = op.as_mut() else { continue };
            let Some(scope) = required_scope(method, &path) else {
                op.security = Some(Vec::new());
                continue;
            };
            let mut allowed = vec![scope.as_str()];
            if scope != Scope::Admin {
                allowed.push(Scope::Admin.as_str());
            }
            op.security = Some(
                allowed
                    .iter()
                    .map(|s| SecurityRequirement::new(SCHEME, [*s]))
                    .collect(),
            );
            let refused = &mut op.responses.responses;
            refused.insert(
                "401".into(),
                refusal("`missing_api_key`, `invalid_api_key` or `revoked_api_key`."),
            );
            let names: Vec<String> = allowed.iter().map(|s| format!("`{s}`")).collect();
            refused.insert(
                "403".into(),
                refusal(&format!(
                    "`insufficient_scope`: the key's scope is not {}.",
                    names.join(" or ")
                )),
            );
        }
    }
}

/// A request path the template stands for: every `{name}` segment filled.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "x.md" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// A 401 or 403: the error shape from the local key check, or API Gateway's own body when its
/// authorizer refuses in AWS.
fn refusal(description: &str) -> RefOr<Response> {
    let gateway = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .required("message")
        .description(Some(
            "API Gateway's own refusal body, when its authorizer refuses (in AWS).",
        ));
    let schema = AnyOfBuilder::new()
        .item(Ref::from_schema_name("Error"))
        .item(gateway);
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_become_request_paths() {
        assert_eq!(concrete("/docs/{path}"), "/docs/x.md");
        assert_eq!(concrete("/analytics/metrics"), "/analytics/metrics");
    }
}
