//! `qemu-test`: the QEMU end-to-end suite for one board, and helpers it runs in namespaces.
//! Normally started by `cargo xtask qemu-test`.

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
qemu-test run --board BOARD --images DIR --out DIR [--no-raspi3b] [--no-uefi|--uefi-only]
    boot target/image/BOARD/out/ (DIR) between a LAN client and a simulated internet (network
    namespaces spinq-lan, spinq-wan; needs root) and check what spind sees and enforces;
    artifacts and timings in the --out DIR
    --no-raspi3b   rpi3: skip the SD image's boot under -M raspi3b to the ready marker
    --no-uefi      x86_64: skip the disk's boot under UEFI (OVMF, -M q35) to the ready marker
                   and the root login that checks systemd-boot started it
    --uefi-only    x86_64: only that UEFI boot, not the end-to-end run before it
qemu-test mqtt-sub HOST PORT tcp|ws FILE [USER PASSWORD]
                                            MQTT transcript of SPIN/# as JSON lines
qemu-test probe ADDR PORT...                TCP connect to each port: open|closed|filtered
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("mqtt-sub") if args.len() == 5 || args.len() == 7 => {
            let port = args[2].parse().unwrap_or(1883);
            let login = args.get(5).zip(args.get(6)).map(|(u, p)| (u.clone(), p.clone()));
            qemu_tests::mqtt::subscriber(&args[1], port, &args[3], &args[4], login)
        }
        Some("probe") if args.len() >= 3 => {
            let ports: Vec<u16> = args[2..].iter().filter_map(|p| p.parse().ok()).collect();
            qemu_tests::probe(&args[1], &ports).map(|s| print!("{s}"))
        }
        _ => Err(HELP.to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qemu-test: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mut board = None;
    let mut images = None;
    let mut out = None;
    let mut raspi3b = true;
    let mut uefi = true;
    let mut e2e = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => board = it.next().cloned(),
            "--images" => images = it.next().map(PathBuf::from),
            "--out" => out = it.next().map(PathBuf::from),
            "--no-raspi3b" => raspi3b = false,
            "--no-uefi" => uefi = false,
            "--uefi-only" => e2e = false,
            other => return Err(format!("unknown argument {other:?}\n{HELP}")),
        }
    }
    let board = board.ok_or(HELP)?;
    if !e2e && (board != "x86_64" || !uefi) {
        return Err(format!("--uefi-only boots x86_64 under UEFI (not with --no-uefi)\n{HELP}"));
    }
    // Absolute paths: the servers in the namespaces change directory.
    let abs = |p: PathBuf| {
        if p.is_absolute() {
            p
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    };
    let images = images.map(abs);
    let out = out.map(abs);
    let opts = qemu_tests::suite::Options {
        images: images.ok_or(HELP)?,
        out: out.ok_or(HELP)?,
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        board,
        e2e,
        raspi3b,
        uefi,
    };
    match qemu_tests::suite::run(&opts) {
        Ok(report) => {
            eprintln!("\nqemu-test {}: passed\n{}", opts.board, report.text());
            Ok(())
        }
        Err((report, e)) => {
            eprintln!("\nqemu-test {}: FAILED\n{}", opts.board, report.text());
            Err(format!(
                "{e}\nartifacts (serial console, spind's log, MQTT transcripts, servers' logs): {}",
                opts.out.display()
            ))
        }
    }
}
