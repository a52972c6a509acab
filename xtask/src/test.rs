//! `cargo xtask test`: every test layer that exists, in order, with a summary. A layer whose
//! prerequisites are missing is reported as skipped with the reason; under CI (`CI=true`) that
//! is a failure, so CI never passes by skipping.

use crate::util::{self, cargo};

struct Layer {
    name: &'static str,
    /// Why the layer cannot run here, if it cannot.
    missing: fn() -> Option<String>,
    run: fn() -> Result<(), String>,
}

fn layers() -> Vec<Layer> {
    vec![Layer {
        name: "unit + integration (cargo test --workspace; starts the real spind binary)",
        missing: || None,
        run: || util::run(cargo().args(["test", "--workspace", "--locked"])),
    }]
}

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("xtask test takes no arguments (got {a:?})"));
    }
    let mut report = Vec::new();
    let mut failed = false;
    for layer in layers() {
        let outcome = match (layer.missing)() {
            Some(why) if util::in_ci() => {
                failed = true;
                format!("FAILED (cannot run under CI: {why})")
            }
            Some(why) => format!("skipped: {why}"),
            None => match (layer.run)() {
                Ok(()) => "passed".to_string(),
                Err(e) => {
                    failed = true;
                    format!("FAILED: {e}")
                }
            },
        };
        report.push(format!("  {:<80} {outcome}", layer.name));
    }
    eprintln!("\nxtask test summary:\n{}", report.join("\n"));
    if failed {
        Err("some test layers failed".into())
    } else {
        Ok(())
    }
}
