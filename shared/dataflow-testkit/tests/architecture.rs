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

/// `crate::x` references of each top-level module of a crate's `src`, tests left out.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".rs") || name == "tests.rs" {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or("")
                .trim_end_matches(".rs")
                .to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let m: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !m.is_empty() && m != top {
                        edges.entry(top.clone()).or_default().insert(m);
                    }
                }
            }
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
    for path in workspace().keys() {
        let src = root().join(path).join("src");
        if let Some(c) = a_cycle(&module_edges(&src)) {
            panic!("{path}: modules import each other: {}", c.join(" -> "));
        }
    }
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
