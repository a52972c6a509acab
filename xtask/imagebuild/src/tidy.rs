//! Tidy checks of this crate's source: the module map's invariants (lib.rs) hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`debian` for `debian/disk.rs`), `None` for lib.rs.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib").then_some(name)
}

/// Which top-level modules each top-level module uses (`crate::NAME`), from the source text.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(m) = module_of(&src, &f) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        let uses = g.entry(m.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `crate::{a, b}` lists are not used here; a name that is not a module is an item of
            // lib.rs (none are used from inside the crate).
            if !name.is_empty() && name != m && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                uses.insert(name);
            }
        }
    }
    g
}

#[test]
fn modules_use_each_other_without_cycles() {
    let g = graph();
    // Depth-first search for a cycle; the path names it.
    fn visit(g: &BTreeMap<String, BTreeSet<String>>, m: &str, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[i..].join(" -> "));
        }
        path.push(m.to_string());
        for n in g.get(m).into_iter().flatten() {
            visit(g, n, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(&g, m, &mut Vec::new(), &mut done);
    }
    // The map's invariants: the bases do not use each other; the board schema uses only the
    // value sets' helpers (elf facts, paths).
    let uses = |m: &str| g.get(m).cloned().unwrap_or_default();
    assert!(!uses("debian").contains("openwrt") && !uses("openwrt").contains("debian"), "{g:?}");
    for m in uses("board") {
        assert!(["elf", "paths"].contains(&m.as_str()), "board uses {m}: {g:?}");
    }
    assert!(g.len() >= 8, "the graph should hold every module: {g:?}");
}

#[test]
fn every_module_opens_with_its_doc_comment_and_runs_commands_through_the_runner() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("//!"), "{} lacks its opening doc comment", f.display());
        let (spawn, std_command) = (["Command", "::new("].concat(), ["std::process::", "Command"].concat());
        assert!(!text.contains(&spawn) && !text.contains(&std_command), "{} runs a command itself", f.display());
    }
}
