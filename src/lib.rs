//! failoverd: a health-polling DNS failover agent with an embedded authoritative DNS server.
//!
//! Data flows one way: [`config`] → [`check`] probes → [`health`] (one writer) → [`decide`]
//! (pure) → [`dns::Zone`] swapped atomically → the DNS server ([`dns`]). [`agent`] wires them.

pub mod agent;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod decide;
pub mod dns;
pub mod events;
pub mod health;
pub mod history;
pub mod logging;
pub mod notify;
pub mod overrides;
pub mod publish;
pub mod published;
pub mod serial;
pub mod state_dir;
pub mod status;

/// The top-level modules form layers: no cycle of `crate::` paths between them, so that a
/// newcomer can read them bottom-up (docs/architecture.md). Test code is left out (a test may
/// build its fixtures with a module above the one it tests). See the layers with
/// `cargo test --lib layers -- --nocapture`.
#[cfg(test)]
mod layers {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// `line` without its `//` comment (doc comments name other modules in prose).
    fn code(line: &str) -> &str {
        line.split_once("//").map_or(line, |(code, _)| code)
    }

    /// The code of a file, comments and `#[cfg(test)]` items cut out.
    fn production_code(text: &str) -> String {
        let mut out = String::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim() == "#[cfg(test)]" {
                // Skip the item that follows: up to its `;` or its closing brace.
                let mut depth = 0i64;
                for line in lines.by_ref() {
                    let line = code(line).trim_end();
                    depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
                    if depth <= 0 && (line.ends_with(';') || line.ends_with('}')) {
                        break;
                    }
                }
                continue;
            }
            out.push_str(code(line));
            out.push('\n');
        }
        out
    }

    /// The top-level modules a file's code names through `crate::`.
    fn uses(code: &str, file: &str) -> BTreeSet<String> {
        assert!(
            !code.contains("crate::{"),
            "{file}: write one `use crate::module::…` per module, so that this test sees each edge"
        );
        code.split("crate::")
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// The top-level modules, and the edges between them, each with a file that makes it.
    fn modules() -> (BTreeSet<String>, BTreeMap<(String, String), String>) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut modules = BTreeSet::new();
        let mut edges = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let test_only = relative.ends_with("/tests.rs") || relative.contains("/tests/");
                if !relative.ends_with(".rs") || test_only {
                    continue;
                }
                let module = relative
                    .split('/')
                    .next()
                    .unwrap()
                    .trim_end_matches(".rs")
                    .to_string();
                if module == "lib" || module == "main" {
                    continue;
                }
                modules.insert(module.clone());
                let text = std::fs::read_to_string(&path).unwrap();
                for used in uses(&production_code(&text), &relative) {
                    if used != module {
                        edges
                            .entry((module.clone(), used))
                            .or_insert_with(|| relative.clone());
                    }
                }
            }
        }
        (modules, edges)
    }

    #[test]
    fn the_modules_form_layers_without_a_cycle() {
        let (modules, edges) = modules();
        // Peel the layers bottom-up: a module whose dependencies are all placed goes next.
        let mut placed: BTreeMap<&str, usize> = BTreeMap::new();
        while placed.len() < modules.len() {
            let layer: Vec<&str> = modules
                .iter()
                .map(String::as_str)
                .filter(|m| !placed.contains_key(m))
                .filter(|m| {
                    edges
                        .keys()
                        .filter(|(from, _)| from == m)
                        .all(|(_, to)| placed.contains_key(to.as_str()))
                })
                .collect();
            if layer.is_empty() {
                // Every module left depends on another one left: walk until one repeats.
                let next = |m: &str| {
                    edges
                        .iter()
                        .find(|((from, to), _)| from == m && !placed.contains_key(to.as_str()))
                        .map(|((_, to), file)| (to.clone(), file.clone()))
                        .unwrap()
                };
                let mut path: Vec<(String, String)> = Vec::new();
                let mut at = modules
                    .iter()
                    .find(|m| !placed.contains_key(m.as_str()))
                    .unwrap()
                    .clone();
                while !path.iter().any(|(m, _)| *m == at) {
                    let (to, file) = next(&at);
                    path.push((at, file));
                    at = to;
                }
                let start = path.iter().position(|(m, _)| *m == at).unwrap();
                let cycle: Vec<String> = path[start..]
                    .iter()
                    .map(|(m, file)| format!("{m} (src/{file})"))
                    .collect();
                panic!("the modules form a cycle: {} -> {at}", cycle.join(" -> "));
            }
            let level = placed.values().max().map_or(0, |l| l + 1);
            println!("layer {level}: {}", layer.join(", "));
            for m in layer {
                placed.insert(m, level);
            }
        }
    }

    #[test]
    fn test_code_and_comments_are_left_out() {
        let text = "use crate::a::X; // crate::b\n#[cfg(test)]\nmod tests {\n    use crate::c;\n    fn f() { crate::d(); }\n}\n#[cfg(test)]\nmod more;\nfn g() { crate::e::h() }\n";
        let found = uses(&production_code(text), "t.rs");
        assert_eq!(found, BTreeSet::from(["a".to_string(), "e".to_string()]));
    }
}
