//! Tidy check across xtask, its crates and qemu-tests: external commands run only through the
//! runner crate (`runner::cmd!`), so each is one readable line with errors that name it.

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
    for dir in ["xtask/src", "xtask/imagebuild/src", "qemu-tests/src"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 30, "{files:?}");
    let (new, std_command) = (["Command", "::new("].concat(), ["process::", "Command"].concat());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(&new) && !text.contains(&std_command),
            "{} starts a process itself: use runner::cmd! (xtask/runner)",
            f.display()
        );
    }
}
