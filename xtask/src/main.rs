//! Project automation: `cargo xtask test | bench | image | help`.
//!
//! Kept to the standard library so it builds in seconds on a fresh machine.

mod bench;
mod image;
mod qemu;
mod test;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask COMMAND

Commands:
  test     run every test layer (unit, integration with the real spind binary, ...);
           layers that need root or host tools say so and fail under CI=true
  bench [replay|router|all|image]
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
           image (root, Debian; not in all): the x86_64 image built cold in a fresh
                   target directory, then rebuilt after a spind change (SPIND_BUILD_ID);
                   stage times and sizes (writes target/bench/image-report.md)
  image    build a router image: cargo xtask image --board NAME (--list for the boards)
  qemu-test [--board x86_64|rpi3] [--no-build] [--no-raspi3b]
           boot the images in QEMU between a LAN client and a simulated internet (network
           namespaces; root) and check DHCP, DNS, NAT, spind's MQTT stream, blocking across a
           reboot, the UI, the closed WAN (--help for more)
  help     this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("image") => image::run(&args[1..]),
        Some("qemu-test") => qemu::run(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
