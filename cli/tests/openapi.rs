//! The committed OpenAPI document (`shared/dataflow-http/openapi.json`, what `/openapi.json`
//! serves) is the one `dataflow openapi` makes from the handlers. When a handler, an answer type
//! or a parameter changes, this fails until the file is regenerated:
//! `UPDATE_OPENAPI=1 cargo test -p dataflow-cli --test openapi`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::path::Path;
use std::process::Command;

#[test]
fn the_committed_document_is_the_generated_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_dataflow"))
        .arg("openapi")
        .output()
        .expect("run dataflow openapi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/dataflow-http/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&file, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&file).unwrap();
    // Compare the whole text: a reordering or reformatting is a change too.
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is stale from line {}: regenerate it with `UPDATE_OPENAPI=1 cargo test -p dataflow-cli --test openapi`",
            file.display(),
            first + 1
        );
    }
    // And it is what the API serves.
    assert_eq!(dataflow_http::OPENAPI, generated);
}
