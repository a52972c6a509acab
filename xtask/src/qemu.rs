//! `cargo xtask qemu-test [--board x86_64|rpi3]`: builds the image (cached stages are reused),
//! then boots it in QEMU between a LAN client and a simulated internet (network namespaces) and
//! checks what spind sees and enforces; x86_64 is also booted under UEFI (OVMF) and rpi3 under
//! `-M raspi3b`. The suite itself is the `qemu-tests` crate (binary `qemu-test`); this file
//! checks the host (programs and OVMF's firmware), builds what it needs and runs it per board.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use runner::cmd;
use runner::host::{self, Need};

pub const BOARDS: &[&str] = &["x86_64", "rpi3"];

const HELP: &str = "\
cargo xtask qemu-test [--board x86_64|rpi3]... [--no-build] [--no-raspi3b] [--no-uefi]

  Boots each board's image in QEMU (TCG unless KVM really works) between a LAN client and a
  simulated internet made of network namespaces, and checks from the LAN side: DHCP, DNS and
  HTTP through the router (IPv4 NAT and IPv6), spind's MQTT stream (TCP 1883 and WebSocket
  1884: device node with MAC and DHCP name, server node with the queried name, traffic bytes,
  dnsquery), JSON-RPC blocking across a reboot, a name rule (the router answers 0.0.0.0 and cuts
  the cached address), the web UI, and that nothing is open on the WAN.
  x86_64 boots its disk through SeaBIOS (-M pc), then once more through UEFI (OVMF on -M q35,
  no network) to the ready marker, and a root login checks that systemd-boot started it
  (/sys/firmware/efi, LoaderEntrySelected = spin.conf). rpi3 runs under -M virt (cortex-a53,
  the image's kernel and root file system) with its WiFi settings in spin-admin.txt on the boot
  partition: mac80211_hwsim gives two radios, the image's hostapd serves one, a station in a
  namespace of the guest associates (WPA2-PSK, then SAE), gets a lease, resolves, downloads,
  shows as a spind device and is blocked, and a wrong passphrase does not associate; then it
  boots the SD image under -M raspi3b to the ready marker. Needs root.

  --board NAME   only this board (repeatable; default: x86_64 and rpi3)
  --no-build     use target/image/BOARD/out/ as it is (default: cargo xtask image --board
                 BOARD first; cached stages make that quick)
  --no-raspi3b   rpi3: skip the -M raspi3b boot
  --no-uefi      x86_64: skip the UEFI boot (and do not require OVMF, package ovmf)

  Artifacts (serial console log, spind's journal, MQTT transcripts, the simulated internet's
  DHCP/DNS/HTTP logs, timings.txt) in target/qemu-test/BOARD/. SPIN_QEMU_ACCEL=tcg|kvm skips
  the KVM probe.
";

/// What the suite needs on the host for a board (the tools are in `runner::host::TOOLS`):
/// x86_64 with its UEFI boot also OVMF (package ovmf), unless `--no-uefi`.
fn needs_for(board: &str, uefi: bool) -> Vec<Need> {
    match board {
        "rpi3" => vec![Need::QemuTestArm],
        _ if uefi => vec![Need::QemuTestX86, Need::QemuTestUefi],
        _ => vec![Need::QemuTestX86],
    }
}

/// Why the suite cannot run here (for `cargo xtask test`).
pub fn missing() -> Option<String> {
    if !host::is_root() {
        return Some("qemu-test needs root (network namespaces, tap devices)".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun (tap devices)".into());
    }
    None
}

/// Checks the host tools; as root on Debian installs what is missing.
fn ensure_tools(boards: &[String], uefi: bool) -> Result<()> {
    let needs: Vec<Need> = boards.iter().flat_map(|b| needs_for(b, uefi)).collect();
    Ok(host::ensure(&needs)?)
}

pub fn run(args: &[String]) -> Result<()> {
    let mut boards: Vec<String> = Vec::new();
    let mut build = true;
    let mut raspi3b = true;
    let mut uefi = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => boards.push(it.next().cloned().ok_or_else(|| anyhow!("--board needs a value"))?),
            s if s.starts_with("--board=") => boards.push(s["--board=".len()..].to_string()),
            "--no-build" => build = false,
            "--no-raspi3b" => raspi3b = false,
            "--no-uefi" => uefi = false,
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(());
            }
            other => bail!("xtask qemu-test: unknown argument {other:?}\n\n{HELP}"),
        }
    }
    if boards.is_empty() {
        boards = BOARDS.iter().map(|s| s.to_string()).collect();
    }
    if let Some(b) = boards.iter().find(|b| !BOARDS.contains(&b.as_str())) {
        bail!("xtask qemu-test: no QEMU suite for board {b:?} (boards: {})", BOARDS.join(", "));
    }
    if let Some(why) = missing() {
        bail!("xtask qemu-test: {why}");
    }
    ensure_tools(&boards, uefi)?;
    let sh = crate::shell()?;
    let cargo = imagebuild::cargo();
    cmd!(sh, "{cargo} build --locked -p qemu-tests --bin qemu-test").run()?;
    let exe = imagebuild::target_dir().join("debug/qemu-test");

    let mut summary = Vec::new();
    let mut failed = Vec::new();
    for b in &boards {
        let t0 = Instant::now();
        let images = imagebuild::out_dir(b);
        if build {
            crate::image::build(b, imagebuild::Options::default(), false, false)
                .map_err(|e| anyhow!("xtask qemu-test: building the {b} image: {e:#}"))?;
        } else if !images.join(format!("spin-{b}.img")).exists() {
            bail!(
                "xtask qemu-test: no image in {} (--no-build): build it with `cargo xtask image --board {b}`",
                images.display()
            );
        }
        let build_secs = t0.elapsed().as_secs_f64();
        let out: PathBuf = imagebuild::target_dir().join("qemu-test").join(b);
        let mut skip: Vec<&str> = Vec::new();
        if !raspi3b {
            skip.push("--no-raspi3b");
        }
        if !uefi {
            skip.push("--no-uefi");
        }
        let t1 = Instant::now();
        let r = cmd!(sh, "{exe} run --board {b} --images {images} --out {out} {skip...}").run();
        let test_secs = t1.elapsed().as_secs_f64();
        let verdict = match &r {
            Ok(()) => "passed".to_string(),
            Err(_) => {
                failed.push(b.clone());
                format!("FAILED (see {}/FAILED.txt)", out.display())
            }
        };
        summary.push(format!("  {b:<8} {verdict}: suite {}, image build/check {}", mins(test_secs), mins(build_secs)));
    }
    eprintln!("\nxtask qemu-test summary:\n{}", summary.join("\n"));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("qemu-test failed for {}", failed.join(", ")))
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
            host::tools_for(&needs_for(board, uefi)).into_iter().filter(|t| t.package == "ovmf").collect::<Vec<_>>()
        };
        let with = ovmf("x86_64", true);
        assert_eq!(with.len(), 1);
        assert_eq!(with[0].probe, host::Probe::File(host::OVMF_CODE));
        assert!(!with[0].backports);
        assert!(ovmf("x86_64", false).is_empty());
        assert!(ovmf("rpi3", true).is_empty());
        // A file is looked for where it is, a program on the PATH.
        assert!(host::have("/bin/sh") && host::have("sh"));
        assert!(!host::have("/nonexistent/OVMF_CODE_4M.fd") && !host::have("OVMF_CODE_4M.fd"));
    }
}
