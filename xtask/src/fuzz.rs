//! `cargo xtask fuzz [--time SECONDS] [TARGET...]`: runs spind's fuzz targets (`spind/fuzz`,
//! cargo-fuzz and libFuzzer on the pinned nightly), each for SECONDS (default 60), and writes
//! their executions, coverage and crashes to `target/fuzz/report.md`. Seeds come from the
//! committed corpus `spind/fuzz/corpus/TARGET` (read only); what the fuzzer finds goes to
//! `target/fuzz/corpus/TARGET`. A crash fails the run and names the input libFuzzer saved
//! (`spind/fuzz/artifacts/TARGET/`): it becomes a unit test beside the parser it hit.

use anyhow::{bail, Context, Result};
use runner::cmd;
use std::fmt::Write as _;

/// Every target, in the order they run: what each feeds to which parser.
pub const TARGETS: &[(&str, &str)] = &[
    ("netlink", "conntrack, neighbour, NFLOG, route, link and nftables-generation payloads"),
    ("frame", "captured frames: Ethernet, Linux cooked, loopback, raw IP, then IP, TCP/UDP, DNS"),
    ("mdns", "mDNS responses and announcements, from an IPv4 or an IPv6 sender"),
    ("capture", "pcap and pcapng files as replay reads them"),
    ("extsrc", "streams of extsrc messages"),
    ("config", "spind.conf, UCI and WiFi settings files, hostapd's replies"),
    ("jsonrpc", "JSON-RPC requests, answered by a core"),
    ("state_files", "list, names, node-store, pairs and leases files, loaded by a core"),
    ("http_head", "HTTP request heads: /mqtt upgrade, Host/Origin/Referer, Basic auth, cookies, paths"),
    ("blocklist", "blocklist files: hosts, adblock rules, a name a line"),
];

/// cargo-fuzz, pinned; installed by `cargo xtask setup`.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// One target's run.
pub struct Outcome {
    pub target: &'static str,
    pub seconds: u64,
    pub runs: u64,
    pub coverage: u64,
    pub features: u64,
    pub corpus: u64,
    pub crash: Option<String>,
}

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 60;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                seconds = it.next().and_then(|s| s.parse().ok()).context("--time needs a number of seconds")?;
            }
            t => match TARGETS.iter().find(|(name, _)| *name == t) {
                Some((name, _)) => chosen.push(*name),
                None => bail!(
                    "xtask fuzz: unknown target {t:?}; the targets are {}",
                    TARGETS.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                ),
            },
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().map(|t| t.0).collect();
    }
    let outcomes = fuzz(&chosen, seconds)?;
    let crashed: Vec<String> =
        outcomes.iter().filter_map(|o| o.crash.as_ref().map(|c| format!("{}: {c}", o.target))).collect();
    if !crashed.is_empty() {
        bail!("fuzzing found crashes:\n  {}", crashed.join("\n  "));
    }
    Ok(())
}

/// Builds the targets once, runs each for `seconds`, prints and writes the report.
pub fn fuzz(targets: &[&'static str], seconds: u64) -> Result<Vec<Outcome>> {
    let nightly = imagebuild::toolchain::ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let sh = crate::shell()?;
    let root = sh.current_dir();
    let fuzz_dir = root.join("spind/fuzz");
    cmd!(sh, "cargo +{nightly} fuzz build -O --fuzz-dir {fuzz_dir}").run()?;
    let mut outcomes = Vec::new();
    for &target in targets {
        let found = root.join("target/fuzz/corpus").join(target);
        let seeds = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&found)?;
        std::fs::create_dir_all(&seeds)?;
        let max_time = format!("-max_total_time={seconds}");
        eprintln!("xtask fuzz: {target} for {seconds} s");
        let out = cmd!(
            sh,
            "cargo +{nightly} fuzz run -O --fuzz-dir {fuzz_dir} {target} {found} {seeds} -- {max_time} -rss_limit_mb=2048 -print_final_stats=1"
        )
        .output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        let mut o = parse_stats(target, seconds, &log);
        if !out.status.success() {
            let artifact = log
                .lines()
                .find_map(|l| l.split("Test unit written to ").nth(1))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| format!("exit {}; last lines:\n{}", out.status, tail(&log, 20)));
            o.crash = Some(artifact);
        }
        outcomes.push(o);
    }
    let report = report(&outcomes);
    print!("{report}");
    let path = root.join("target/fuzz/report.md");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask fuzz: report in {}", path.display());
    Ok(outcomes)
}

pub fn ensure_cargo_fuzz() -> Result<()> {
    let sh = crate::shell()?;
    let installed = cmd!(sh, "cargo fuzz --version").quiet().read().unwrap_or_default();
    if !installed.contains(CARGO_FUZZ_VERSION) {
        eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
        cmd!(sh, "cargo install cargo-fuzz --version {CARGO_FUZZ_VERSION} --locked").run()?;
    }
    Ok(())
}

/// Reads libFuzzer's final statistics (`-print_final_stats=1`) and its last status line.
fn parse_stats(target: &'static str, seconds: u64, log: &str) -> Outcome {
    let stat = |key: &str| {
        log.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok())).unwrap_or(0)
    };
    // "#123456	DONE   cov: 812 ft: 2301 corp: 140/9876b ..." (or the last progress line).
    let last = log.lines().rev().find(|l| l.starts_with('#') && l.contains("cov: ")).unwrap_or("");
    let field = |key: &str| -> u64 {
        last.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Outcome {
        target,
        seconds,
        runs: stat("stat::number_of_executed_units:"),
        coverage: field("cov:"),
        features: field("ft:"),
        corpus: field("corp:"),
        crash: None,
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn report(outcomes: &[Outcome]) -> String {
    let mut s = String::from("| target | parsers | seconds | executions | coverage (edges) | features | corpus | crashes |\n|---|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        let what = TARGETS.iter().find(|t| t.0 == o.target).map(|t| t.1).unwrap_or("");
        let _ = writeln!(
            s,
            "| {} | {what} | {} | {} | {} | {} | {} | {} |",
            o.target,
            o.seconds,
            o.runs,
            o.coverage,
            o.features,
            o.corpus,
            if o.crash.is_some() { "1" } else { "0" }
        );
    }
    s
}

/// Whether the fuzz targets can run here (libFuzzer needs x86_64 or aarch64 Linux, and rustup).
pub fn missing() -> Option<String> {
    if !runner::host::have("rustup") {
        return Some("no rustup (the pinned nightly comes from it)".into());
    }
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Some("libFuzzer runs on x86_64 and aarch64 only".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzers_final_lines_are_read() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 11 corp: 3/30b exec/s: 0 rss: 30Mb\n\
                   #4096\tpulse  cov: 120 ft: 300 corp: 40/1200b lim: 43 exec/s: 2048 rss: 40Mb\n\
                   #9000\tDONE   cov: 130 ft: 320 corp: 44/1300b lim: 43 exec/s: 3000 rss: 41Mb\n\
                   Done 9000 runs in 3 second(s)\nstat::number_of_executed_units: 9000\nstat::peak_rss_mb: 41\n";
        let o = parse_stats("frame", 3, log);
        assert_eq!((o.runs, o.coverage, o.features, o.corpus), (9000, 130, 320, 44));
        let r = report(&[o]);
        assert!(r.contains("| frame | captured frames"), "{r}");
        assert!(r.contains("| 3 | 9000 | 130 | 320 | 44 | 0 |"), "{r}");
    }
}
