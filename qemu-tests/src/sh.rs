//! Running host commands (inside a network namespace or not) with errors that say what ran.

use std::process::{Command, Output, Stdio};

/// `ip netns exec NS ARGS...` (or plain `ARGS...` when `ns` is empty).
pub fn cmd(ns: &str, args: &[&str]) -> Command {
    let mut c;
    if ns.is_empty() {
        c = Command::new(args[0]);
        c.args(&args[1..]);
    } else {
        c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
    }
    c.stdin(Stdio::null());
    c
}

pub fn show(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs and returns the output, whatever the exit status.
pub fn output(mut c: Command) -> Result<Output, String> {
    c.output()
        .map_err(|e| format!("cannot run {}: {e}", show(&c)))
}

/// Runs; an error (with stderr) unless it exits 0. Returns stdout.
pub fn run(c: Command) -> Result<String, String> {
    let shown = show(&c);
    let out = output(c)?;
    if !out.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `run(cmd(ns, args))`.
pub fn ns(ns: &str, args: &[&str]) -> Result<String, String> {
    run(cmd(ns, args))
}

/// Runs and ignores the outcome (cleanup).
pub fn quiet(ns: &str, args: &[&str]) {
    let mut c = cmd(ns, args);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let _ = c.status();
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
