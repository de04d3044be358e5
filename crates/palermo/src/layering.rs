//! The core's top-level modules import each other without a circle, and `error.rs` imports
//! nothing of the crate: a test that reads the sources, so a circle cut once stays cut.
//!
//! Why a test and not a review rule: a circle is invisible in one diff (each `use crate::`
//! looks harmless), and once two modules need each other neither can be read, moved or
//! tested alone. The graph's nodes are the modules declared in `lib.rs`; an edge is any
//! `crate::` path in a module's code (comments and doc links are not imports), with the
//! names `lib.rs` re-exports (`crate::Client`) resolved to the module that defines them.
//! Test code (from a file's `#[cfg(test)]` on) may use anything and is not counted.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Code without comments: `//` to the end of the line (doc comments included) and `/* */`.
/// A `//` inside a string literal (a URL) also ends the line early, which can only hide an
/// import written after a URL on the same line.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first name of every path after `crate::`, including each item of `crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `palermo_crate::` or similar, not our crate
        }
        let after = &code[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let (mut depth, mut item_start) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        names.push(ident(&group[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.push(ident(after).to_string());
        }
    }
    names
}

/// The modules `lib.rs` declares, and the module behind each name it re-exports.
fn root(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let lib = code(lib);
    let mut modules = BTreeSet::new();
    let mut exports = BTreeMap::new();
    for statement in lib.split(';') {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let Some(keyword) = words.iter().position(|w| *w == "mod" || *w == "use") else {
            continue;
        };
        let rest = words[keyword + 1..].join(" ");
        if words[keyword] == "mod" {
            if !rest.contains('{') {
                modules.insert(ident(&rest).to_string());
            }
            continue;
        }
        let module = ident(&rest).to_string();
        let items = rest[module.len()..].trim_start_matches("::");
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit(" as ").next().unwrap_or(item).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() {
                exports.insert(name.to_string(), module.clone());
            }
        }
    }
    (modules, exports)
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable source directory").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Top-level module -> the top-level modules its code names.
fn graph() -> Graph {
    let src = src();
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let (modules, exports) = root(&lib);
    let mut graph = Graph::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a path");
        let first = first.as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if !modules.contains(&module) || module == "layering" {
            continue; // lib.rs, and this file's examples
        }
        let text = fs::read_to_string(&file).expect("a readable source file");
        // Tests may use any module: only the code before a file's test module counts.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let edges = graph.entry(module.clone()).or_default();
        for name in crate_paths(&code(text)) {
            let target = if modules.contains(&name) {
                Some(name)
            } else {
                exports.get(&name).cloned()
            };
            if let Some(target) = target.filter(|t| *t != module && modules.contains(t)) {
                edges.insert(target);
            }
        }
    }
    graph
}

/// One circle, as the list of modules along it, if the graph has any.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_form_no_circle() {
    let graph = graph();
    assert!(graph.len() > 5, "the reader found the modules: {graph:?}");
    if let Some(found) = circle(&graph) {
        panic!("import circle: {}\n{graph:#?}", found.join(" -> "));
    }
}

#[test]
fn error_imports_nothing_of_the_crate() {
    let graph = graph();
    assert_eq!(graph.get("error"), Some(&BTreeSet::new()), "{graph:#?}");
}

#[test]
fn the_reader_sees_grouped_and_re_exported_paths() {
    let paths = crate_paths("use crate::{a::B, c, d::{e, f}};\nlet x = crate::Client::new();");
    assert_eq!(paths, ["a", "c", "d", "Client"]);
    let (modules, exports) = root("mod a;\npub mod b;\npub use a::{X, y as Z};\n");
    assert_eq!(modules, BTreeSet::from(["a".to_string(), "b".to_string()]));
    assert_eq!(exports.get("Z").map(String::as_str), Some("a"));
    assert_eq!(code("a // crate::x\n/* crate::y */b"), "a \nb");
    let graph = Graph::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
