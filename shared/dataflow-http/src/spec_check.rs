//! Holds a router to [`crate::OPENAPI`]: every operation the document describes is routed, and
//! every bound it declares on a query parameter (integer minimum and maximum, string minimum and
//! maximum length) is where the API starts answering `400` for that parameter. Run by both
//! functions' router tests; a fuzzer runs against the local stack too (scripts/e2e-local.sh).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Sends one request to a router in-process: the status and the JSON body (`Null` when the
/// body is not JSON). What the router tests of both functions call too.
pub async fn request(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let req = match Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
    {
        Ok(r) => r,
        Err(e) => return (StatusCode::IM_A_TEAPOT, Value::String(e.to_string())),
    };
    let Ok(resp) = app.clone().oneshot(req).await;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn send(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let body = if method == "PUT" {
        b"# Probe\n\nA probe document.\n".to_vec()
    } else {
        Vec::new()
    };
    request(app, method, uri, body).await
}

/// A value of `len` characters made of words (so search finds terms in it), with no space at
/// either end (which an API may trim).
fn text_of(len: usize) -> String {
    let mut s: String = "zeppelin ".repeat(len / 9 + 1).chars().take(len).collect();
    if s.ends_with(' ') {
        s.pop();
        s.push('z');
    }
    s
}

fn query(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The failures for the operations whose path `wanted` selects (empty when the router matches).
pub async fn run(app: &axum::Router, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let Ok(spec) = serde_json::from_str::<Value>(crate::OPENAPI) else {
        return vec!["the OpenAPI document is not JSON".into()];
    };
    let mut failures = Vec::new();
    let Some(paths) = spec["paths"].as_object() else {
        return vec!["the OpenAPI document has no paths".into()];
    };
    for (path, ops) in paths.iter().filter(|(p, _)| wanted(p)) {
        let Some(ops) = ops.as_object() else { continue };
        let concrete = path.replace("{path}", "probe/probe.md");
        for (method, op) in ops {
            let method = method.to_ascii_uppercase();
            let params: Vec<&Value> = op["parameters"]
                .as_array()
                .map(|a| a.iter().filter(|p| p["in"] == "query").collect())
                .unwrap_or_default();
            // Required parameters at their example (or a word).
            let base: Vec<(String, String)> = params
                .iter()
                .filter(|p| p["required"] == true)
                .filter_map(|p| {
                    let name = p["name"].as_str()?.to_owned();
                    let example = p["schema"]["examples"][0]
                        .as_str()
                        .map_or_else(|| "zeppelin".to_owned(), str::to_owned);
                    Some((name, example))
                })
                .collect();
            let uri = |extra: &[(String, String)]| {
                let mut all: Vec<(String, String)> = base
                    .iter()
                    .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                    .cloned()
                    .collect();
                all.extend(extra.iter().cloned());
                if all.is_empty() {
                    concrete.clone()
                } else {
                    format!("{concrete}?{}", query(&all))
                }
            };
            let (s, v) = send(app, &method, &uri(&[])).await;
            let unrouted = s == StatusCode::METHOD_NOT_ALLOWED
                || (s == StatusCode::NOT_FOUND
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no route")));
            if unrouted {
                failures.push(format!("{method} {path}: described but not routed ({s})"));
                continue;
            }
            if method != "GET" {
                continue;
            }
            for p in &params {
                let Some(name) = p["name"].as_str() else {
                    continue;
                };
                let schema = if p["schema"]["type"] == "array" {
                    &p["schema"]["items"]
                } else {
                    &p["schema"]
                };
                let mut cases: Vec<(String, bool)> = Vec::new();
                if let (Some(min), Some(max)) =
                    (schema["minimum"].as_i64(), schema["maximum"].as_i64())
                {
                    cases.push((min.to_string(), true));
                    cases.push((max.to_string(), true));
                    cases.push(((min - 1).to_string(), false));
                    cases.push(((max + 1).to_string(), false));
                }
                if let Some(values) = schema["enum"].as_array() {
                    // Every listed value is taken; anything else (the empty value) is refused.
                    for v in values.iter().filter_map(Value::as_str) {
                        cases.push((v.to_owned(), true));
                    }
                    cases.push((String::new(), false));
                }
                match schema["minLength"].as_u64() {
                    _ if schema["enum"].is_array() => {}
                    Some(min) if min > 0 => cases.push((text_of(min as usize - 1), false)),
                    // No lower bound on a string: the empty value is allowed.
                    _ if schema["type"] == "string" && schema["format"].is_null() => {
                        cases.push((String::new(), true))
                    }
                    _ => {}
                }
                if let Some(max) = schema["maxLength"].as_u64() {
                    cases.push((text_of(max as usize), true));
                    cases.push((text_of(max as usize + 1), false));
                }
                for (value, accepted) in cases {
                    let (s, v) = send(app, "GET", &uri(&[(name.to_owned(), value.clone())])).await;
                    let refused = s == StatusCode::BAD_REQUEST && v["parameter"] == name;
                    if refused == accepted {
                        let shown: String = value.chars().take(20).collect();
                        failures.push(format!(
                            "GET {path}: {name}={shown}… (len {}) is {} by the document, the API answered {s} {v}",
                            value.chars().count(),
                            if accepted { "allowed" } else { "refused" },
                        ));
                    }
                }
            }
        }
    }
    failures
}
