//! The HTTP API's Lambda REQUEST authorizer (payload 2.0, simple responses): the route's scope
//! from its route key, the key from `x-api-key`, the answer `{"isAuthorized": …}`. API Gateway
//! caches an answer per (key, route) for the template's TTL, so a revocation takes effect within
//! it. A refusal is API Gateway's own `403 {"message": "Forbidden"}` (`401` when the header is
//! missing): HTTP APIs do not let an authorizer shape the body.

use dataflow_config::{ConfigError, Env, FromEnv};
use dataflow_keys::{authorize, required_scope, AuthError, KeyStore, HEADER};
use serde_json::{json, Value};

/// `KEYS_TABLE` (default `dataflow-keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysConfig {
    pub table: String,
}

impl FromEnv for KeysConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.table("KEYS_TABLE", "dataflow-keys")?,
        })
    }
}

/// `"POST /events"` or `"PUT /docs/{proxy+}"` into (method, a path of that route).
fn route(event: &Value) -> (String, String) {
    let key = event
        .get("routeKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (method, path) = key.split_once(' ').unwrap_or(("GET", key));
    // A greedy parameter stands for any path below it.
    let path = path.replace("{proxy+}", "x");
    (method.to_owned(), path)
}

/// The authorizer's answer for one request; never an error (an error is a 500 to the caller).
pub async fn handle(store: &dyn KeyStore, event: &Value) -> Value {
    let (method, path) = route(event);
    let Some(needs) = required_scope(&method, &path) else {
        return json!({"isAuthorized": true});
    };
    let presented = event
        .get("headers")
        .and_then(|h| h.get(HEADER))
        .and_then(Value::as_str);
    match authorize(store, presented, needs).await {
        Ok(key) => {
            tracing::info!(key_id = %key.id, scope = key.scope.as_str(), route = %format!("{method} {path}"), "authorized");
            json!({"isAuthorized": true, "context": {"key_id": key.id, "key_name": key.name, "scope": key.scope.as_str()}})
        }
        Err(AuthError::Denied(d)) => {
            tracing::info!(reason = d.code(), route = %format!("{method} {path}"), "refused");
            json!({"isAuthorized": false})
        }
        Err(AuthError::Store(e)) => {
            // Fail closed: no key store, no access.
            tracing::error!(error = %e, "key store unavailable");
            json!({"isAuthorized": false})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflow_keys::{generate, MemoryKeys, Scope};

    fn event(route: &str, key: Option<&str>) -> Value {
        let mut headers = json!({"user-agent": "curl/8"});
        if let Some(k) = key {
            headers["x-api-key"] = json!(k);
        }
        json!({"version": "2.0", "type": "REQUEST", "routeKey": route, "headers": headers})
    }

    #[tokio::test]
    async fn every_case() {
        let store = MemoryKeys::default();
        let ingest = generate("app", Scope::Ingest, 1);
        let read = generate("dash", Scope::Read, 1);
        let admin = generate("ops", Scope::Admin, 1);
        for k in [&ingest, &read, &admin] {
            store.put(&k.record).await.unwrap();
        }
        let ok = |v: Value| v["isAuthorized"] == json!(true);
        assert!(ok(handle(&store, &event("GET /health", None)).await));
        assert!(ok(handle(
            &store,
            &event("POST /events", Some(&ingest.key))
        )
        .await));
        let v = handle(&store, &event("GET /analytics/summary", Some(&read.key))).await;
        assert_eq!(
            v["context"],
            json!({"key_id": read.record.id, "key_name": "dash", "scope": "read"})
        );
        assert!(ok(handle(
            &store,
            &event("PUT /docs/{proxy+}", Some(&admin.key))
        )
        .await));
        assert!(!ok(handle(
            &store,
            &event("PUT /docs/{proxy+}", Some(&read.key))
        )
        .await));
        assert!(!ok(handle(
            &store,
            &event("GET /analytics/summary", Some(&ingest.key))
        )
        .await));
        assert!(!ok(
            handle(&store, &event("POST /events", Some(&read.key))).await
        ));
        assert!(!ok(handle(&store, &event("POST /events", None)).await));
        assert!(!ok(handle(
            &store,
            &event("POST /events", Some("dfk_unknown"))
        )
        .await));
        store.revoke("app", 2).await.unwrap();
        assert!(!ok(handle(
            &store,
            &event("POST /events", Some(&ingest.key))
        )
        .await));
        // The key never appears in what the authorizer answers.
        let v = handle(&store, &event("GET /docs", Some(&admin.key))).await;
        assert!(!v.to_string().contains(&admin.key));
    }
}
