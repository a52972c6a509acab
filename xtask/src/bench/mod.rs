//! `cargo xtask bench [replay|router|all]`: the figures the README quotes, measured on this
//! machine with the release build of spind. Writes `target/bench/report.md`.
//!
//! - `replay` ([`replay`]): replay throughput and RSS, idle RSS, binary size;
//! - `router` ([`router`], root): spind live on a namespace router with real traffic through it:
//!   CPU and RSS at 1,000 / 10,000 / 50,000 UDP flows, flows per `traffic` message, DNS at
//!   5,000 queries/s (dnsquery coverage, client loss and latency with and without spind,
//!   DNS answer to node update latency), next to SPIN 1.0's figures and the targets.

mod replay;
mod router;

use std::path::PathBuf;

use crate::util::{self, cargo};

pub fn run(args: &[String]) -> Result<(), String> {
    let what = match args {
        [] => "all",
        [a] if ["replay", "router", "all"].contains(&a.as_str()) => a.as_str(),
        _ => return Err(format!("usage: cargo xtask bench [replay|router|all] (got {args:?})")),
    };
    if what != "replay" && !util::is_root() {
        return Err("the router benchmark needs root (network namespaces); run `cargo xtask bench replay` \
                    without root"
            .into());
    }
    util::run(cargo().args(["build", "--release", "--locked", "-p", "spind"]))?;
    let root = util::root();
    let bin = std::env::var_os("SPIND_BENCH_BIN").map(PathBuf::from).unwrap_or_else(|| root.join("target/release/spind"));
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("report.md");

    if what != "router" {
        let report = replay::run(&bin, &dir)?;
        std::fs::write(&path, &report).map_err(|e| e.to_string())?;
        println!("{report}\n(written to {})", path.display());
    }
    if what != "replay" {
        let report = router::run(&bin, &dir)?;
        // Appended: `all` puts it after the replay table, `router` alone keeps an earlier one.
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&report);
        std::fs::write(&path, &text).map_err(|e| e.to_string())?;
        println!("{report}\n(appended to {})", path.display());
    }
    Ok(())
}
