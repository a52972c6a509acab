//! `cargo xtask bench [replay|router|names|history|ui|all]`: the figures the README quotes, measured on this
//! machine with the release build of spind. Writes `target/bench/report.md`.
//!
//! - `replay` ([`replay`]): replay throughput and RSS, idle RSS, binary size;
//! - `router` ([`router`], root): spind live on a namespace router with real traffic through it:
//!   CPU and RSS at 1,000 / 10,000 / 50,000 UDP flows, flows per `traffic` message, DNS at
//!   5,000 queries/s (dnsquery coverage, client loss and latency with and without spind,
//!   DNS answer to node update latency), next to SPIN 1.0's figures and the targets;
//! - `names` ([`names`], root): name rules on the DNS path at 5,000 queries/s through the
//!   namespace router with real dnsmasq, spind stopped / with a 100,000-name blocklist / with
//!   the list and name rules (loss, p50/p99/max, CPU), and what loading the list costs (time,
//!   RSS), against the bounds;
//! - `history` ([`history`]): the per-device history's size on disk for 50 devices × 30 days,
//!   30-day query times, and the bytes it writes in a busy day;
//! - `ui` ([`ui`], chromium): the web UI's frame times under 500 nodes and 2,000 edges;
//! - `image` ([`image`], root, Debian; not part of `all`: it builds an image from nothing):
//!   the x86_64 image cold and rebuilt after a spind change, with stage times and sizes.

mod history;
mod image;
mod names;
mod replay;
mod router;
mod ui;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use runner::cmd;

pub fn run(args: &[String]) -> Result<()> {
    let what = match args {
        [] => "all",
        [a] if ["replay", "router", "names", "history", "ui", "all", "image"].contains(&a.as_str()) => a.as_str(),
        _ => bail!("usage: cargo xtask bench [replay|router|names|history|ui|all|image] (got {args:?})"),
    };
    if what == "image" {
        if let Some(why) = crate::test::image_missing() {
            bail!("bench image: {why}");
        }
        let dir = imagebuild::root().join("target/bench");
        std::fs::create_dir_all(&dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        let report = image::run(&dir)?;
        let path = dir.join("image-report.md");
        std::fs::write(&path, &report)?;
        println!("{report}\n(written to {})", path.display());
        return Ok(());
    }
    if ["router", "names", "all"].contains(&what) && !runner::host::is_root() {
        bail!("the {what} benchmark needs root (network namespaces); run `cargo xtask bench replay` without root");
    }
    let (sh, cargo) = (crate::shell()?, imagebuild::cargo());
    cmd!(sh, "{cargo} build --release --locked -p spind").run()?;
    let root = imagebuild::root();
    let bin =
        // Where the build above put it: cargo's target directory (`CARGO_TARGET_DIR` if set).
        std::env::var_os("SPIND_BENCH_BIN").map(PathBuf::from).unwrap_or_else(|| imagebuild::target_dir().join("release/spind"));
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let path = dir.join("report.md");

    if what == "replay" || what == "all" {
        let report = replay::run(&bin, &dir).map_err(anyhow::Error::msg)?;
        std::fs::write(&path, &report)?;
        println!("{report}\n(written to {})", path.display());
    }
    if what == "router" || what == "all" {
        let report = router::run(&bin, &dir).map_err(anyhow::Error::msg)?;
        // Appended: `all` puts it after the replay table, `router` alone keeps an earlier one.
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&report);
        std::fs::write(&path, &text)?;
        println!("{report}\n(appended to {})", path.display());
    }
    if what == "names" || what == "all" {
        let report = names::run(&bin, &dir).map_err(anyhow::Error::msg)?;
        append(&path, &report)?;
        println!("{report}\n(appended to {})", path.display());
    }
    if what == "history" || what == "all" {
        let report = history::run(&bin, &dir).map_err(anyhow::Error::msg)?;
        append(&path, &report)?;
        println!("{report}\n(appended to {})", path.display());
    }
    if what == "ui" || what == "all" {
        ui::run(&bin, &dir).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Appends `report` to the report file after what is there (`all` puts each table after the
/// one before; a scenario run alone keeps the earlier ones).
fn append(path: &std::path::Path, report: &str) -> Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(report);
    std::fs::write(path, &text)?;
    Ok(())
}

/// A DNS message for `<label>.bench.test` (type A): the query, or with `answer` (address, TTL)
/// the response with that one A record. Both benchmarks generate DNS load with it.
pub(crate) fn dns_message(id: u16, label: &str, answer: Option<([u8; 4], u32)>) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(if answer.is_some() { &[0x81, 0x80] } else { &[0x01, 0x00] });
    m.extend_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    for part in [label, "bench", "test"] {
        m.push(part.len() as u8);
        m.extend_from_slice(part.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some((addr, ttl)) = answer {
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&[0, 4]);
        m.extend_from_slice(&addr);
    }
    m
}
