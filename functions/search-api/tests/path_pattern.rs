//! The document-path pattern the OpenAPI document declares is the rule `check_path` applies:
//! a path matches the pattern exactly when the upload check accepts it (length aside: the
//! document says 512 bytes, which a pattern cannot count).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_search::upload::check_path;

fn pattern(method: &str) -> fancy_regex::Regex {
    let spec: serde_json::Value = serde_json::from_str(dataflow_http::OPENAPI).unwrap();
    let params = spec["paths"]["/docs/{path}"][method]["parameters"]
        .as_array()
        .unwrap();
    let path = params.iter().find(|p| p["name"] == "path").unwrap();
    fancy_regex::Regex::new(path["schema"]["pattern"].as_str().unwrap()).unwrap()
}

#[test]
fn the_documented_path_pattern_is_the_upload_check() {
    let paths = [
        "ops/runbook.md",
        "a b/c.PDF",
        "עברית/שלום.md",
        "x.markdown",
        "notes.txt",
        "page.htm",
        "page.HTML",
        "report.docx",
        ".md",
        "dir/.hidden.md",
        "a..b.md",
        "...md",
        "/abs.md",
        "a//b.md",
        "./a.md",
        "a/./b.md",
        "a/../b.md",
        "../a.md",
        "a\\b.md",
        "tab\there.md",
        "nul\u{0}.md",
        "del\u{7f}.md",
        "c1\u{98}.md",
        "report\u{202e}fdp.md",
        "mark\u{200e}.md",
        "iso\u{2066}.md",
        "arabic\u{061c}.md",
        "noext",
        "script.exe",
        "a.md/",
        "a.md.exe",
        "",
    ];
    for method in ["put", "delete"] {
        let re = pattern(method);
        for p in paths {
            assert_eq!(
                re.is_match(p).unwrap(),
                check_path(p).is_ok(),
                "{method} {p:?}: the pattern and check_path disagree"
            );
        }
    }
}
