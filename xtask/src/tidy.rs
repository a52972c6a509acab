//! Tidy check across xtask, its crates, qemu-tests and spind's integration tests: external
//! commands run only through the runner crate (`runner::cmd!`, its `spawn` for long-running
//! children), so each is one readable line with errors that name it, and one module owns
//! process start. spind's own source (`spind/src`) is not xtask's: its rule (only the enforcer
//! and the kernel sources run commands) is spind's tidy test.

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

#[test]
fn only_the_runner_starts_processes() {
    let root = imagebuild::root();
    let mut files = Vec::new();
    for dir in ["xtask/src", "xtask/imagebuild/src", "xtask/testbed/src", "qemu-tests/src", "spind/tests"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("xtask/testbed/src/netns.rs")), "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!starts_a_process(&text), "{} starts a process itself: use runner::cmd! (xtask/runner)", f.display());
    }
}

/// Whether `text` names std's `Command` (to build one, or imports it); the patterns are spelt in
/// halves so that this file does not match itself.
fn starts_a_process(text: &str) -> bool {
    let (new, std_command) = (["Command", "::new("].concat(), ["process::", "Command"].concat());
    text.contains(&new)
        || text.contains(&std_command)
        || text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with(&["use std::", "process::{"].concat()) && l.contains("Command")
        })
}

#[test]
fn the_check_sees_each_way_of_starting_a_process_by_hand() {
    for code in [
        ["let c = std::process::", "Command", "::new(\"ip\");"].concat(),
        ["use std::", "process::", "Command;"].concat(),
        ["use std::", "process::{Child, ", "Command, Stdio};"].concat(),
    ] {
        assert!(starts_a_process(&code), "{code}");
    }
    assert!(!starts_a_process("use std::process::{Child, Output};\nlet c = cmd!(sh, \"ip link\");"));
}
