//! Project automation: `cargo xtask setup | test | bench | fuzz | image | qemu-test | help`.
//!
//! The commands live here; the image builder is the `imagebuild` crate and every external
//! command runs through the `runner` crate (xshell), which also knows the host tools.

mod bench;
mod fuzz;
mod image;
mod qemu;
mod setup;
mod test;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

use anyhow::{bail, Result};

const HELP: &str = "\
cargo xtask COMMAND

Commands:
  setup    install what the tests and image builds need on this host: Debian packages (as
           root on Debian 12, with bookworm-backports for QEMU 10 and e2fsprogs >= 1.47.1),
           Rust targets, the MIPS nightly, zig (--check: only say what is missing)
  test [LAYER...]
           every test layer (gates, setup, unit, fuzz, image, openwrt, qemu; default all): fmt and
           clippy first, then the host set-up, then the tests; layers that need root or host
           tools say so and fail under CI=true
  bench [replay|router|names|history|ui|all|image]
           measure spind (default all; writes target/bench/report.md):
           replay: replay throughput and peak RSS on a generated 1M-packet capture,
                   idle RSS, release binary size;
           router (root): spind live on a namespace router: CPU and RSS at 1k/10k/50k UDP
                   flows, flows per traffic message, DNS at 5,000 queries/s (dnsquery
                   coverage, client loss/latency with and without spind, answer-to-node
                   latency), next to SPIN 1.0's figures. Needs ip, nft, conntrack, ping,
                   mosquitto_sub. SPIND_BENCH_BIN=PATH measures another spind binary;
                   SPIND_BENCH_PERF=1 records target/bench/perf-dns.data (perf record -g)
                   during the DNS load.
           names (root): name rules on the DNS path at 5,000 queries/s with a
                   100,000-name blocklist (loss, latency, CPU, list load time and RSS).
           history: the history's disk size for 50 devices x 30 days, 30-day query
                   times, bytes written in a busy day.
           ui: the web UI's frame times in chromium at 500 nodes / 2,000 edges.
           image (root, Debian; not in all): the x86_64 image built cold in a fresh
                   target directory, then rebuilt after a spind change (SPIND_BUILD_ID);
                   stage times and sizes (writes target/bench/image-report.md)
  fuzz [--time SECONDS] [TARGET...]
           run spind's fuzz targets (cargo-fuzz on the pinned nightly; default every target
           for 60 s): parsers of netlink, frames and DNS, captures, extsrc, config, JSON-RPC,
           state files; writes target/fuzz/report.md, fails on a crash
  image    build a router image: cargo xtask image --board NAME (--list for the boards)
  qemu-test [--board x86_64|rpi3] [--no-build] [--no-raspi3b]
           boot the images in QEMU between a LAN client and a simulated internet (network
           namespaces; root) and check DHCP, DNS, NAT, spind's MQTT stream, blocking across a
           reboot, the UI, the closed WAN (--help for more)
  oui [IN [OUT]]
           the vendor file spind's oui_file reads, from the IEEE registry (IN: default
           /usr/share/ieee-data/oui.txt, Debian's ieee-data; OUT: default oui.bin)
  help     this text
";

/// `cargo xtask oui [IN [OUT]]`.
fn oui(args: &[String]) -> Result<()> {
    let input = args.first().map(String::as_str).unwrap_or(imagebuild::oui::IEEE_OUI_TXT);
    let output = args.get(1).map(String::as_str).unwrap_or("oui.bin");
    if args.len() > 2 {
        bail!("usage: cargo xtask oui [IN [OUT]]");
    }
    let size = imagebuild::oui::generate_file(input.as_ref(), output.as_ref())?;
    println!("{output}: {size} bytes from {input}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(&args[1..]),
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("image") => image::run(&args[1..]),
        Some("qemu-test") => qemu::run(&args[1..]),
        Some("oui") => oui(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => unknown(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the whole chain ("stage disk: `mkfs.ext4 ...` failed (exit status: 1) ...").
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn unknown(command: &str) -> Result<()> {
    bail!("unknown command {command:?}\n\n{HELP}")
}

/// A shell in the workspace root.
pub fn shell() -> Result<runner::Shell> {
    imagebuild::shell()
}
