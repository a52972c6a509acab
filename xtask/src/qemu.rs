//! `cargo xtask qemu-test [--board x86_64|rpi3]`: builds the image (cached stages are reused),
//! then boots it in QEMU between a LAN client and a simulated internet (network namespaces) and
//! checks what spind sees and enforces; x86_64 is also booted under UEFI (OVMF) and rpi3 under
//! `-M raspi3b`. The suite itself is the `qemu-tests` crate (binary `qemu-test`); this file
//! checks the host (programs and OVMF's firmware), builds what it needs and runs it per board.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::image::{self, host};
use crate::util;

pub const BOARDS: &[&str] = &["x86_64", "rpi3"];

const HELP: &str = "\
cargo xtask qemu-test [--board x86_64|rpi3]... [--no-build] [--no-raspi3b] [--no-uefi]

  Boots each board's image in QEMU (TCG unless KVM really works) between a LAN client and a
  simulated internet made of network namespaces, and checks from the LAN side: DHCP, DNS and
  HTTP through the router (IPv4 NAT and IPv6), spind's MQTT stream (TCP 1883 and WebSocket
  1884: device node with MAC and DHCP name, server node with the queried name, traffic bytes,
  dnsquery), JSON-RPC blocking across a reboot, the web UI, and that nothing is open on the WAN.
  x86_64 boots its disk through SeaBIOS (-M pc), then once more through UEFI (OVMF on -M q35,
  no network) to the ready marker, and a root login checks that systemd-boot started it
  (/sys/firmware/efi, LoaderEntrySelected = spin.conf). rpi3 runs under -M virt (cortex-a53,
  the image's kernel and root file system) and also boots the SD image under -M raspi3b to the
  ready marker. Needs root.

  --board NAME   only this board (repeatable; default: x86_64 and rpi3)
  --no-build     use target/image/BOARD/out/ as it is (default: cargo xtask image --board
                 BOARD first; cached stages make that quick)
  --no-raspi3b   rpi3: skip the -M raspi3b boot
  --no-uefi      x86_64: skip the UEFI boot (and do not require OVMF, package ovmf)

  Artifacts (serial console log, spind's journal, MQTT transcripts, the simulated internet's
  DHCP/DNS/HTTP logs, timings.txt) in target/qemu-test/BOARD/. SPIN_QEMU_ACCEL=tcg|kvm skips
  the KVM probe.
";

/// Programs the suite runs on the host (or, given as an absolute path, a file it needs):
/// (program or file, Debian package, from backports).
const TOOLS: &[(&str, &str, bool)] = &[
    ("qemu-img", "qemu-utils", false),
    ("ip", "iproute2", false),
    ("dnsmasq", "dnsmasq-base", false),
    ("dig", "dnsutils", false),
    ("curl", "curl", false),
    ("busybox", "busybox", false),
    ("python3", "python3", false),
];

/// OVMF, the UEFI firmware the x86_64 image is booted with (the suite's variable store,
/// OVMF_VARS_4M.fd, comes from the same package).
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

fn tools_for(board: &str, uefi: bool) -> Vec<(&'static str, &'static str, bool)> {
    let mut t = TOOLS.to_vec();
    if board == "x86_64" && uefi {
        t.push((OVMF_CODE, "ovmf", false));
    }
    match board {
        "rpi3" => t.push(("qemu-system-aarch64", "qemu-system-arm", true)),
        _ => t.push(("qemu-system-x86_64", "qemu-system-x86", true)),
    }
    t
}

/// Why the suite cannot run here (for `cargo xtask test`).
pub fn missing() -> Option<String> {
    if !util::is_root() {
        return Some("qemu-test needs root (network namespaces, tap devices)".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun (tap devices)".into());
    }
    None
}

/// A program on the PATH, or a file given by its absolute path.
fn present(tool: &str) -> bool {
    if tool.starts_with('/') {
        std::path::Path::new(tool).is_file()
    } else {
        host::have(tool)
    }
}

/// Checks the host tools; as root on Debian installs what is missing.
fn ensure_tools(boards: &[String], uefi: bool) -> Result<(), String> {
    let mut missing: Vec<(&str, &str, bool)> = Vec::new();
    for b in boards {
        for t in tools_for(b, uefi) {
            if !present(t.0) && !missing.iter().any(|m| m.1 == t.1) {
                missing.push(t);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let regular: Vec<&str> = missing.iter().filter(|m| !m.2).map(|m| m.1).collect();
    let backports: Vec<&str> = missing.iter().filter(|m| m.2).map(|m| m.1).collect();
    let what: Vec<String> = missing
        .iter()
        .map(|m| format!("{} (package {})", m.0, m.1))
        .collect();
    if util::is_root() && std::path::Path::new("/etc/debian_version").exists() {
        eprintln!(
            "xtask qemu-test: installing missing host tools: {}",
            what.join(", ")
        );
        host::apt_install(&regular, &backports)
    } else {
        Err(format!(
            "missing host tools: {}\ninstall them (as root, Debian 12) with:\n  {}",
            what.join(", "),
            host::install_commands(&regular, &backports).join("\n  ")
        ))
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut boards: Vec<String> = Vec::new();
    let mut build = true;
    let mut raspi3b = true;
    let mut uefi = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => boards.push(it.next().cloned().ok_or("--board needs a value")?),
            s if s.starts_with("--board=") => boards.push(s["--board=".len()..].to_string()),
            "--no-build" => build = false,
            "--no-raspi3b" => raspi3b = false,
            "--no-uefi" => uefi = false,
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(());
            }
            other => {
                return Err(format!(
                    "xtask qemu-test: unknown argument {other:?}\n\n{HELP}"
                ))
            }
        }
    }
    if boards.is_empty() {
        boards = BOARDS.iter().map(|s| s.to_string()).collect();
    }
    if let Some(b) = boards.iter().find(|b| !BOARDS.contains(&b.as_str())) {
        return Err(format!(
            "xtask qemu-test: no QEMU suite for board {b:?} (boards: {})",
            BOARDS.join(", ")
        ));
    }
    if let Some(why) = missing() {
        return Err(format!("xtask qemu-test: {why}"));
    }
    ensure_tools(&boards, uefi)?;
    util::run(util::cargo().args([
        "build",
        "--locked",
        "-p",
        "qemu-tests",
        "--bin",
        "qemu-test",
    ]))?;
    let exe = image::target_dir().join("debug/qemu-test");

    let mut summary = Vec::new();
    let mut failed = Vec::new();
    for b in &boards {
        let t0 = Instant::now();
        let images = image::target_dir().join("image").join(b).join("out");
        if build {
            let board = image::board::load(b)?;
            image::build(
                &board,
                &image::Options {
                    refresh_rootfs: false,
                },
            )
            .map_err(|e| format!("xtask qemu-test: building the {b} image: {e}"))?;
        } else if !images.join(format!("spin-{b}.img")).exists() {
            return Err(format!(
                "xtask qemu-test: no image in {} (--no-build): build it with `cargo xtask image --board {b}`",
                images.display()
            ));
        }
        let build_secs = t0.elapsed().as_secs_f64();
        let out: PathBuf = image::target_dir().join("qemu-test").join(b);
        let mut c = Command::new(&exe);
        c.args(["run", "--board", b])
            .arg("--images")
            .arg(&images)
            .arg("--out")
            .arg(&out);
        if !raspi3b {
            c.arg("--no-raspi3b");
        }
        if !uefi {
            c.arg("--no-uefi");
        }
        let t1 = Instant::now();
        let r = util::run(&mut c);
        let test_secs = t1.elapsed().as_secs_f64();
        let verdict = match &r {
            Ok(()) => "passed".to_string(),
            Err(_) => {
                failed.push(b.clone());
                format!("FAILED (see {}/FAILED.txt)", out.display())
            }
        };
        summary.push(format!(
            "  {b:<8} {verdict}: suite {}, image build/check {}",
            mins(test_secs),
            mins(build_secs)
        ));
    }
    eprintln!("\nxtask qemu-test summary:\n{}", summary.join("\n"));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("qemu-test failed for {}", failed.join(", ")))
    }
}

fn mins(s: f64) -> String {
    format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_needs_ovmf_unless_the_uefi_boot_is_skipped() {
        let ovmf = |board, uefi| {
            tools_for(board, uefi)
                .into_iter()
                .filter(|t| t.1 == "ovmf")
                .collect::<Vec<_>>()
        };
        assert_eq!(ovmf("x86_64", true), [(OVMF_CODE, "ovmf", false)]);
        assert!(ovmf("x86_64", false).is_empty());
        assert!(ovmf("rpi3", true).is_empty());
        // A file is looked for where it is, a program on the PATH.
        assert!(present("/bin/sh") && present("sh"));
        assert!(!present("/nonexistent/OVMF_CODE_4M.fd") && !present("OVMF_CODE_4M.fd"));
    }
}
