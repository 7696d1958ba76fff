//! The OpenAPI document's security is the key check's: every operation names the scopes that
//! `dataflow_keys::required_scope` (which the authorizer and the local stack both apply) lets
//! through, public operations name none, and every secured operation documents its 401 and 403.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_keys::{required_scope, Scope};
use serde_json::{json, Value};

#[test]
fn every_operation_documents_the_scope_the_key_check_needs() {
    let spec: Value = serde_json::from_str(dataflow_http::OPENAPI).unwrap();
    let scheme = &spec["components"]["securitySchemes"]["apiKey"];
    assert_eq!(
        (&scheme["type"], &scheme["in"]),
        (&json!("apiKey"), &json!("header"))
    );
    assert_eq!(scheme["name"], "x-api-key");
    let mut operations = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        // A concrete request path for the template.
        let concrete = path.replace("{path}", "runbooks/a.md");
        for (method, op) in ops.as_object().unwrap() {
            if !["get", "put", "post", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let want = match required_scope(method, &concrete) {
                None => json!([]),
                Some(Scope::Admin) => json!([{"apiKey": ["admin"]}]),
                Some(s) => json!([{"apiKey": [s.as_str()]}, {"apiKey": ["admin"]}]),
            };
            assert_eq!(op["security"], want, "{method} {path}");
            let secured = want != json!([]);
            for code in ["401", "403"] {
                assert_eq!(
                    op["responses"].get(code).is_some(),
                    secured,
                    "{method} {path}: {code} documented when, and only when, a key is needed"
                );
            }
        }
    }
    assert_eq!(operations, 12);
}
