//! Whether a test that needs something this machine may lack (root, a browser) runs here.
//!
//! A test that cannot run fails and names what is missing, unless the runner opted out knowingly
//! (`SPIND_SKIP_ROOT_TESTS=1`, `SPIND_SKIP_BROWSER_TESTS=1`); then it prints `SKIPPED <test>`
//! straight to stderr, past the test harness's output capture, so a skip is never silent. Under
//! CI (`CI` set to anything but empty, `0` or `false`, as `cargo xtask test` reads it) a skip is
//! always a failure: CI never passes by skipping.

use std::io::Write as _;

/// Whether we run under CI: the runner's reading, which `cargo xtask test` uses too.
pub fn in_ci() -> bool {
    runner::host::in_ci()
}

/// Whether the runner set `var=1` to skip a class of tests.
pub fn opted_out(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// Whether we run as root (the runner's check, which `cargo xtask` uses too).
pub fn is_root() -> bool {
    runner::host::is_root()
}

/// True when a test that needs root (network namespaces, packet sockets, nftables) may go on.
/// Without root it fails, unless `SPIND_SKIP_ROOT_TESTS=1` is set: then it prints that it skipped
/// and returns false, except under CI, where that is a failure too.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let why = "needs root (network namespaces, packet sockets, nftables)";
    if opted_out("SPIND_SKIP_ROOT_TESTS") {
        skip(test, why, "SPIND_SKIP_ROOT_TESTS=1");
        return false;
    }
    panic!("{test} {why}; run as root, or set SPIND_SKIP_ROOT_TESTS=1 to skip it knowingly");
}

/// Records a skip the runner asked for with `opt_out`; under CI it fails the test instead.
pub fn skip(test: &str, why: &str, opt_out: &str) {
    match skip_line(test, why, opt_out, in_ci()) {
        Ok(line) => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        Err(failure) => panic!("{failure}"),
    }
}

/// The line a skip prints, or, under CI, the failure it is.
fn skip_line(test: &str, why: &str, opt_out: &str, ci: bool) -> Result<String, String> {
    if ci {
        Err(format!("{test} {why}; {opt_out} asks to skip it, but under CI=true a skip is a failure"))
    } else {
        Ok(format!("SKIPPED {test}: {why}; {opt_out} is set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_under_ci_is_a_failure_naming_the_test() {
        let line = skip_line("router_test", "needs root", "SPIND_SKIP_ROOT_TESTS=1", false).unwrap();
        assert_eq!(line, "SKIPPED router_test: needs root; SPIND_SKIP_ROOT_TESTS=1 is set");
        let failure = skip_line("router_test", "needs root", "SPIND_SKIP_ROOT_TESTS=1", true).unwrap_err();
        assert!(failure.starts_with("router_test needs root"), "{failure}");
        assert!(failure.contains("under CI=true a skip is a failure"), "{failure}");
    }
}
