//! Project automation: `cargo xtask test | bench | image | help`.
//!
//! Kept to the standard library so it builds in seconds on a fresh machine.

mod bench;
mod image;
mod test;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask COMMAND

Commands:
  test     run every test layer (unit, integration with the real spind binary, ...);
           layers that need root or host tools say so and fail under CI=true
  bench    measure spind: replay throughput and peak RSS on a generated 1M-packet capture,
           idle RSS, release binary size (writes target/bench/report.md)
  image    build a router image: cargo xtask image --board NAME (see cargo xtask image --help)
  help     this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("image") => image::run(&args[1..]),
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
