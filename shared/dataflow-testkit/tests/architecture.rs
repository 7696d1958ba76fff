//! docs/architecture.md against the code: its crate table names exactly the workspace's crates,
//! its crate-graph table is what `cargo metadata` says each crate imports (regenerate it with
//! `UPDATE_ARCHITECTURE=1 cargo test -p dataflow-testkit --test architecture`), and no crate has
//! an import circle between its top-level modules.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const BEGIN: &str = "<!-- crate-graph:begin (generated from cargo metadata by shared/dataflow-testkit/tests/architecture.rs) -->";
const END: &str = "<!-- crate-graph:end -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Workspace crates: path (relative to the root) -> (name, workspace crates it imports).
fn workspace() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let root = std::fs::canonicalize(root()).expect("root");
    let packages = m["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest"));
            let dir = manifest.parent().expect("crate dir");
            let rel = dir.strip_prefix(&root).expect("in the workspace");
            let deps = p["dependencies"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| names.contains(n))
                .map(str::to_owned)
                .collect();
            (
                rel.display().to_string(),
                (p["name"].as_str().expect("name").to_owned(), deps),
            )
        })
        .collect()
}

fn graph_table(ws: &BTreeMap<String, (String, BTreeSet<String>)>) -> String {
    let mut t =
        String::from("| crate | imports (workspace crates, normal dependencies) |\n|---|---|\n");
    for (path, (_, deps)) in ws {
        let deps: Vec<String> = deps.iter().map(|d| format!("`{d}`")).collect();
        let deps = if deps.is_empty() {
            "—".to_owned()
        } else {
            deps.join(", ")
        };
        t.push_str(&format!("| `{path}` | {deps} |\n"));
    }
    t
}

#[test]
fn the_crate_table_and_graph_are_the_workspace() {
    let ws = workspace();
    let doc_path = root().join("docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/architecture.md");
    // The crate table: one row per crate, first cell its path.
    let table: BTreeSet<String> = doc
        .lines()
        .take_while(|l| !l.starts_with(BEGIN))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(p, _)| p.to_owned()))
        .collect();
    let members: BTreeSet<String> = ws.keys().cloned().collect();
    assert_eq!(table, members, "the crate table in docs/architecture.md");

    let want = graph_table(&ws);
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/architecture.md has no generated crate graph ({BEGIN} ... {END})");
    };
    let have = doc[b + BEGIN.len()..e].trim_start_matches('\n');
    if have != want {
        if std::env::var_os("UPDATE_ARCHITECTURE").is_some() {
            let updated = format!("{}{BEGIN}\n{want}{}", &doc[..b], &doc[e..]);
            std::fs::write(&doc_path, updated).expect("write");
            return;
        }
        panic!(
            "the crate graph in docs/architecture.md is stale; run UPDATE_ARCHITECTURE=1 cargo test -p dataflow-testkit --test architecture\nwant:\n{want}\nhave:\n{have}"
        );
    }
}

/// A module's path from its file: `lake/layout.rs` is `lake::layout`, `lake/mod.rs` is `lake`,
/// `lib.rs`/`main.rs` the root (empty).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .map(|c| c.trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The paths a source names through `crate::` and `super::`, comments and tests left out:
/// `crate::a::b`, each item of `crate::{a::b, c}`, `super::x` resolved against `module`.
fn referenced_paths(code: &str, module: &[String], is_mod_rs: bool) -> Vec<Vec<String>> {
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    /// `a::b::c` (stops at anything else); a trailing `{…}` group expands into one path each.
    fn paths_at(s: &str, base: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = base;
        let mut rest = s;
        loop {
            let rest_trim = rest.trim_start();
            if let Some(group) = rest_trim.strip_prefix('{') {
                let mut depth = 1;
                let mut item_start = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' | ',' if depth == 1 => {
                            paths_at(&group[item_start..i], path.clone(), out);
                            item_start = i + 1;
                            if c == '}' {
                                return;
                            }
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                return;
            }
            let id = ident(rest_trim);
            if id.is_empty() || id == "self" || id == "*" {
                break;
            }
            path.push(id.to_owned());
            rest = &rest_trim[id.len()..];
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        out.push(path);
    }
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        paths_at(&code[i + "crate::".len()..], Vec::new(), &mut out);
    }
    for (i, _) in code.match_indices("super::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        // In `a/b.rs` (module a::b), `super` is `a`; in `a/b/mod.rs` (also a::b) it is `a` too.
        let _ = is_mod_rs;
        let mut base = module.to_vec();
        base.pop();
        let mut rest = &code[i + "super::".len()..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        paths_at(rest, base, &mut out);
    }
    out
}

/// Edges between sibling modules of a crate's `src`, tests left out. A reference from `a::x`
/// to `b::y` is an edge `a -> b` (siblings under the root); from `lake::layout` to
/// `lake::parquet` an edge between those two. A parent naming its child, or a child its
/// parent, is not an edge: that is how a module and its parts work together.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                files.push(path);
            }
        }
    }
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .map(|p| module_of(p.strip_prefix(src).expect("under src")))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let module = module_of(path.strip_prefix(src).expect("under src"));
        let text = std::fs::read_to_string(path).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let is_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
        for target in referenced_paths(code, &module, is_mod_rs) {
            // The longest module the path names (the rest are items in it).
            let Some(to) = (0..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let common = module.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == module.len() || common == to.len() {
                continue;
            }
            edges
                .entry(module[..=common].join("::"))
                .or_default()
                .insert(to[..=common].join("::"));
        }
    }
    edges
}

fn a_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        u: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(u.to_owned(), 1);
        path.push(u.to_owned());
        for v in edges.get(u).into_iter().flatten() {
            match state.get(v.as_str()) {
                Some(1) => {
                    let at = path.iter().position(|p| p == v).unwrap_or(0);
                    let mut c = path[at..].to_vec();
                    c.push(v.clone());
                    return Some(c);
                }
                None => {
                    if let Some(c) = visit(v, edges, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(u.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in edges.keys() {
        if !state.contains_key(u) {
            if let Some(c) = visit(u, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let mut found = Vec::new();
    for path in workspace().keys() {
        let src = root().join(path).join("src");
        if let Some(c) = a_cycle(&module_edges(&src)) {
            found.push(format!("{path}: {}", c.join(" -> ")));
        }
    }
    assert!(
        found.is_empty(),
        "modules import each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_one() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), ["c".to_owned()].into()),
        ("c".to_owned(), ["a".to_owned()].into()),
    ]
    .into();
    assert_eq!(a_cycle(&edges).map(|c| c.len()), Some(4));
    let line: BTreeMap<String, BTreeSet<String>> =
        [("a".to_owned(), ["b".to_owned()].into())].into();
    assert_eq!(a_cycle(&line), None);
}

#[test]
fn references_are_read_through_groups_and_super() {
    let module = vec!["lake".to_owned(), "layout".to_owned()];
    let code = "use crate::{etl::process::X, lake::{parquet, source::Y}};\n\
                // crate::commented::out\n\
                use super::changes::Z;\n\
                fn f() { crate::time::now_ms(); }";
    let mut got = referenced_paths(code, &module, false);
    got.sort();
    let want: Vec<Vec<String>> = [
        vec!["etl", "process", "X"],
        vec!["lake", "changes", "Z"],
        vec!["lake", "parquet"],
        vec!["lake", "source", "Y"],
        vec!["time", "now_ms"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
}

/// No source file passes 600 lines of code (blank and comment lines aside) before its tests;
/// test files (`tests.rs`, `tests/`) are not counted.
#[test]
fn no_source_file_passes_600_lines_of_code() {
    let mut over = Vec::new();
    for path in workspace().keys() {
        let mut stack = vec![root().join(path).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src dir").flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|e| e != "rs") || p.ends_with("tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).expect("source");
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                let lines = code
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("//"))
                    .count();
                if lines > 600 {
                    over.push(format!("{} ({lines})", p.display()));
                }
            }
        }
    }
    assert!(over.is_empty(), "split these files: {over:?}");
}
