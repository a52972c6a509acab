//! Inspection of a built image, as the tests do it: the partition table (sfdisk), the boot
//! partition (mtools), the root file system (debugfs/dumpe2fs at the partition's offset), the
//! spind binary's architecture, the OVA (tar order, OVF references and sizes, manifest hashes,
//! VMDK header), the compressed outputs, and that assembling the disk again from the same root
//! tar gives the same bytes.

use anyhow::{anyhow, Result};
use runner::host::sha256_file;
use runner::{cmd, Stream};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

use super::{layout, sfdisk_script, Ctx};
use crate::board::{Bootloader, DebianArch, DebianBoard, DebianOutput, Table};
use crate::build::{Built, Detail};
use crate::stage::{file_name, fixed_uuid, mkdirs, Stage};

/// The raw disk and the root tar of a Debian build.
fn disk_of(built: &Built) -> Result<(&Path, &Path)> {
    match &built.detail {
        Detail::Debian { disk, root_tar } => Ok((disk, root_tar)),
        Detail::OpenWrt { .. } => Err(anyhow!("{} was not built as a Debian image", built.board)),
    }
}

/// Collects failed checks so one run reports all of them.
#[derive(Default)]
pub struct Report {
    pub failures: Vec<String>,
    pub passed: usize,
}

impl Report {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(what.into());
        }
    }
    fn result(self, what: &str) -> Result<()> {
        if self.failures.is_empty() {
            eprintln!("xtask image: {what}: {} checks passed", self.passed);
            Ok(())
        } else {
            Err(anyhow!(
                "{what}: {} of {} checks failed:\n  - {}",
                self.failures.len(),
                self.failures.len() + self.passed,
                self.failures.join("\n  - ")
            ))
        }
    }
}

pub fn check_built(board: &DebianBoard, built: &Built) -> Result<()> {
    let mut r = Report::default();
    let (disk, _) = disk_of(built)?;
    let work = built.out_dir.parent().unwrap().join("inspect.tmp");
    let _ = fs::remove_dir_all(&work);
    mkdirs(&work)?;
    check_partitions(board, disk, &mut r)?;
    check_boot_partition(board, disk, &mut r)?;
    check_root_fs(board, disk, &work, &mut r)?;
    check_outputs(board, built, &work, &mut r)?;
    let _ = fs::remove_dir_all(&work);
    r.result(&format!("inspection of {}", file_name(disk)))
}

/// `sfdisk -d`: the table type, disk id, and each partition's start, size, type, uuid, name.
fn check_partitions(b: &DebianBoard, disk: &Path, r: &mut Report) -> Result<()> {
    let sh = crate::paths::shell()?;
    let dump = cmd!(sh, "sfdisk -d {disk}").read()?;
    let l = layout(b);
    let want = sfdisk_script(b);
    let gpt = b.disk.table == Table::Gpt;
    r.check(
        dump.contains(if gpt { "label: gpt" } else { "label: dos" }),
        format!("partition table is {}: {dump}", b.disk.table),
    );
    let id_line = want.lines().find(|l| l.starts_with("label-id:")).unwrap().to_string();
    r.check(dump.lines().any(|l| l.eq_ignore_ascii_case(&id_line)), format!("disk id {id_line:?} in sfdisk -d"));
    let parts: Vec<&str> = dump.lines().filter(|l| l.contains(" : start=")).collect();
    r.check(parts.len() == 2, format!("two partitions (found {})", parts.len()));
    if parts.len() != 2 {
        return Ok(());
    }
    let field = |line: &str, key: &str| -> String {
        line.split(" : ")
            .nth(1)
            .unwrap_or("")
            .split(", ")
            .find_map(|kv| kv.trim().strip_prefix(&format!("{key}=")))
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_string()
    };
    let starts = [l.boot_start, l.root_start];
    let sizes = [l.boot_sectors, l.root_sectors];
    for (i, p) in parts.iter().enumerate() {
        r.check(
            field(p, "start") == starts[i].to_string(),
            format!("partition {} starts at sector {}: {p}", i + 1, starts[i]),
        );
        r.check(field(p, "size") == sizes[i].to_string(), format!("partition {} has {} sectors: {p}", i + 1, sizes[i]));
        let label = &b.disk.partitions[i].label;
        if gpt {
            let purpose = if i == 0 { "part-boot" } else { "part-root" };
            r.check(
                field(p, "uuid").eq_ignore_ascii_case(&fixed_uuid(&b.name, purpose)),
                format!("partition {} uuid is the fixed one: {p}", i + 1),
            );
            r.check(field(p, "name") == *label, format!("partition {} is named {label}: {p}", i + 1));
        }
    }
    if gpt {
        r.check(
            field(parts[0], "type").eq_ignore_ascii_case("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
            "partition 1 is an EFI system partition",
        );
        r.check(
            field(parts[0], "attrs").contains("LegacyBIOSBootable"),
            "partition 1 is LegacyBIOSBootable (syslinux gptmbr)",
        );
        // gptmbr.bin in the protective MBR's boot code.
        let head = read_bytes(disk, 0, 512)?;
        r.check(head[..440].iter().any(|&x| x != 0), "BIOS boot code (gptmbr.bin) in the first 440 bytes");
        r.check(head[510] == 0x55 && head[511] == 0xaa, "MBR signature 55 aa");
    } else {
        r.check(field(parts[0], "type") == "c", format!("partition 1 is FAT32 LBA (type c): {}", parts[0]));
        r.check(field(parts[1], "type") == "83", format!("partition 2 is Linux (type 83): {}", parts[1]));
    }
    Ok(())
}

fn read_bytes(p: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(p).map_err(|e| anyhow!("cannot open {}: {e}", p.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut v = vec![0u8; len];
    f.read_exact(&mut v)?;
    Ok(v)
}

fn mtools(program: &str, disk: &Path, offset: u64, args: &[&str]) -> Result<String> {
    let sh = crate::paths::shell()?;
    let image_at = format!("{}@@{offset}", disk.display());
    Ok(cmd!(sh, "{program} -i {image_at} {args...}").env("MTOOLS_SKIP_CHECK", "1").read()?)
}

/// The FAT boot partition: label, volume id, the boot files, the kernel command line.
fn check_boot_partition(b: &DebianBoard, disk: &Path, r: &mut Report) -> Result<()> {
    let off = layout(b).boot_start * 512;
    let label = mtools("mlabel", disk, off, &["-s", "::"]).unwrap_or_default();
    r.check(label.contains(&b.boot_part().label), format!("boot partition label {}: {label:?}", b.boot_part().label));
    let listing = mtools("mdir", disk, off, &["-/", "-b", "-a", "::"])?;
    let has = |p: &str| listing.lines().any(|l| l.trim().eq_ignore_ascii_case(&format!("::{p}")));
    let cmdline = super::cmdline(b);
    if b.disk.bootloader == Bootloader::SyslinuxSystemdBoot {
        for f in [
            "/EFI/BOOT/BOOTX64.EFI",
            "/loader/loader.conf",
            "/loader/entries/spin.conf",
            "/vmlinuz",
            "/initrd.img",
            "/syslinux/syslinux.cfg",
            "/syslinux/ldlinux.sys",
            "/syslinux/ldlinux.c32",
        ] {
            r.check(has(f), format!("boot partition has {f}"));
        }
        let (sh, image_at) = (crate::paths::shell()?, format!("{}@@{off}", disk.display()));
        let efi = cmd!(sh, "mtype -i {image_at} ::/EFI/BOOT/BOOTX64.EFI")
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        r.check(efi.starts_with(b"MZ"), "BOOTX64.EFI is a PE executable");
        let entry = mtools("mtype", disk, off, &["::/loader/entries/spin.conf"]).unwrap_or_default();
        r.check(
            entry.contains(&format!("options {cmdline}")),
            format!("systemd-boot entry has the command line {cmdline:?}: {entry:?}"),
        );
        let sys = mtools("mtype", disk, off, &["::/syslinux/syslinux.cfg"]).unwrap_or_default();
        r.check(sys.contains(&format!("APPEND {cmdline}")), "syslinux.cfg has the command line");
        r.check(sys.contains("SERIAL 0 115200"), "syslinux talks on the serial port");
    } else {
        for f in [
            "/cmdline.txt",
            "/config.txt",
            "/bootcode.bin",
            "/start.elf",
            "/fixup.dat",
            "/bcm2837-rpi-3-b.dtb",
            "/bcm2837-rpi-3-b-plus.dtb",
        ] {
            r.check(has(f), format!("boot partition has {f}"));
        }
        r.check(listing.lines().any(|l| l.contains("::/vmlinuz-")), "boot partition has the kernel (vmlinuz-*)");
        r.check(listing.lines().any(|l| l.contains("::/initrd.img-")), "boot partition has the initrd (initrd.img-*)");
        let c = mtools("mtype", disk, off, &["::/cmdline.txt"]).unwrap_or_default();
        r.check(c.trim() == cmdline, format!("cmdline.txt is {cmdline:?}: {c:?}"));
        let cfg = mtools("mtype", disk, off, &["::/config.txt"]).unwrap_or_default();
        r.check(cfg.contains("arm_64bit=1"), "config.txt boots 64-bit");
    }
    Ok(())
}

fn debugfs(dev: &str, request: &str) -> Result<String> {
    let sh = crate::paths::shell()?;
    Ok(cmd!(sh, "debugfs -R {request} {dev}").read()?)
}

/// The ext4 root: label, UUID, the router's files, spind's architecture, no per-device secrets.
fn check_root_fs(b: &DebianBoard, disk: &Path, work: &Path, r: &mut Report) -> Result<()> {
    let dev = format!("{}?offset={}", disk.display(), layout(b).root_start * 512);
    // debugfs understands FILE?offset=N (dumpe2fs does not).
    let sb = debugfs(&dev, "stats")?;
    let sb_field =
        |k: &str| sb.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string())).unwrap_or_default();
    r.check(sb_field("Filesystem volume name:") == b.root_part().label, format!("root label {}", b.root_part().label));
    r.check(sb_field("Filesystem UUID:") == fixed_uuid(&b.name, "fs-root"), "root file system UUID is the fixed one");
    let sh = crate::paths::shell()?;
    let fsck = cmd!(sh, "e2fsck -f -n {dev}").output()?;
    r.check(
        fsck.status.success(),
        format!("e2fsck -fn is clean: {}", String::from_utf8_lossy(&fsck.stdout).lines().last().unwrap_or("")),
    );

    let cat = |p: &str| debugfs(&dev, &format!("cat {p}")).unwrap_or_default();
    let stat = |p: &str| debugfs(&dev, &format!("stat {p}")).unwrap_or_default();
    for f in [
        "/usr/sbin/spind",
        "/etc/spin/spind.conf",
        "/etc/systemd/system/spind.service",
        "/etc/systemd/system/spin-firstboot.service",
        "/etc/systemd/system/spin-firstboot.service.d/boot-partition.conf",
        "/etc/systemd/system/spin-ready.service",
        "/etc/systemd/system/spin-growroot.service",
        "/usr/lib/spin/firstboot",
        "/usr/lib/spin/ready",
        "/etc/nftables.conf",
        "/etc/dnsmasq.d/spin.conf",
        "/etc/systemd/network/10-wan.network",
        "/etc/systemd/network/22-br-lan.network",
        "/usr/share/dnsmasq-base/trust-anchors.conf",
        "/usr/sbin/nft",
        "/usr/sbin/dnsmasq",
        "/usr/sbin/sshd",
    ] {
        r.check(stat(f).contains("Type: regular"), format!("root file system has {f}"));
    }
    for l in [
        "multi-user.target.wants/spind.service",
        "multi-user.target.wants/spin-ready.service",
        "sysinit.target.wants/spin-firstboot.service",
        "sysinit.target.wants/nftables.service",
        "multi-user.target.wants/systemd-networkd.service",
    ] {
        r.check(stat(&format!("/etc/systemd/system/{l}")).contains("Type: symlink"), format!("enabled: {l}"));
    }
    // spind: executable, owned by root, for the board's CPU.
    let spind_stat = stat("/usr/sbin/spind");
    r.check(
        spind_stat.contains("Mode:  0755") && spind_stat.contains("User:     0"),
        format!("spind is 0755 root: {}", spind_stat.lines().take(3).collect::<Vec<_>>().join(" | ")),
    );
    let bin = work.join("spind");
    let _ = debugfs(&dev, &format!("dump /usr/sbin/spind {}", bin.display()));
    let elf = fs::read(&bin).unwrap_or_default();
    let machine =
        if elf.len() > 20 && elf.starts_with(b"\x7fELF") { u16::from_le_bytes([elf[18], elf[19]]) } else { 0 };
    let want = match b.arch {
        DebianArch::Amd64 => crate::elf::EM_X86_64,
        DebianArch::Arm64 => crate::elf::EM_AARCH64,
    };
    r.check(machine == want, format!("spind is an ELF for {} (e_machine {want}, found {machine})", b.arch));
    r.check(elf.len() > 4 && elf[4] == 2, "spind is a 64-bit ELF");

    let svc = cat("/etc/systemd/system/spind.service");
    r.check(
        svc.contains("Restart=on-failure") && svc.contains("ExecStart=/usr/sbin/spind"),
        "spind.service runs spind and restarts on failure",
    );
    let conf = cat("/etc/spin/spind.conf");
    r.check(
        conf.contains("spinweb_interfaces = 192.168.8.1")
            && conf.contains("state_dir = /etc/spin")
            && conf.contains("dhcp_leases_file = /var/lib/misc/dnsmasq.leases")
            && conf.contains("spinweb_password_file = /etc/spin/spinweb.passwd"),
        "spind.conf: LAN address, state dir, dnsmasq leases, the admin's password file",
    );
    let nft = cat("/etc/nftables.conf");
    r.check(
        nft.contains("table inet filter") && nft.contains("table ip nat") && nft.contains("masquerade"),
        "nftables.conf has the filter and NAT tables",
    );
    let rules: Vec<&str> = nft.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    r.check(
        !rules.iter().any(|l| l.contains("flush ruleset") || l.contains("table inet spin")),
        "nftables.conf leaves spind's table alone (no flush ruleset)",
    );
    r.check(
        nft.contains(&format!("iifname \"{}\" drop", b.network.wan)),
        "nftables.conf drops the rest of the WAN's input",
    );
    r.check(nft.contains("13026, 1883, 1884"), "nftables.conf opens spind's ports on the LAN");
    r.check(!nft.contains('@'), "nftables.conf has no unfilled template variables");
    let wan = cat("/etc/systemd/network/10-wan.network");
    r.check(wan.contains(&format!("Name={}", b.network.wan)), "WAN network file matches the board's WAN");
    let ready = cat("/usr/lib/spin/ready");
    r.check(ready.contains("SPIN-ROUTER-READY"), "the ready unit prints SPIN-ROUTER-READY");
    let fstab = cat("/etc/fstab");
    r.check(
        fstab.contains(&b.root_part().label) || fstab.contains(&fixed_uuid(&b.name, "part-root")),
        "fstab mounts the root partition",
    );
    // Nothing per-device in the image.
    r.check(cat("/etc/machine-id").trim() == "uninitialized", "machine-id is 'uninitialized' (set at first boot)");
    let ssh = debugfs(&dev, "ls -l /etc/ssh").unwrap_or_default();
    r.check(!ssh.contains("ssh_host_"), "no SSH host keys in the image");
    let shadow = cat("/etc/shadow");
    let root_pw =
        shadow.lines().find(|l| l.starts_with("root:")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").to_string();
    r.check(
        root_pw == "*" || root_pw.starts_with('!'),
        format!("root has no password in the image (found {root_pw:?})"),
    );
    // Trimmed: no man pages or docs beyond copyright files.
    let man = debugfs(&dev, "ls /usr/share/man").unwrap_or_default();
    r.check(!man.contains("man1"), "no man pages");
    check_wifi(b, &dev, r);
    Ok(())
}

/// The Pi 3 B's (BCM43430) and 3 B+'s (BCM43455) radios: their firmware and the boards' NVRAM
/// files from firmware-brcm80211 (brcmfmac asks for the board's name first, from the device
/// tree's compatible; the 43455's firmware is a link into cypress/).
const BRCM_FIRMWARE: &[&str] = &[
    "brcm/brcmfmac43430-sdio.bin",
    "brcm/brcmfmac43430-sdio.raspberrypi,3-model-b.txt",
    "brcm/brcmfmac43455-sdio.raspberrypi,3-model-b-plus.txt",
    "cypress/cyfmac43455-sdio.bin",
    "cypress/cyfmac43455-sdio.clm_blob",
];

/// A board with `[wifi]`: hostapd, the firmware, the wireless modules (the radio's driver, and
/// mac80211_hwsim for the QEMU test), the access point's unit started by the radio's device, and
/// what the first boot's WiFi set-up reads. A board without it has none of the unit.
fn check_wifi(b: &DebianBoard, dev: &str, r: &mut Report) {
    let stat = |p: &str| debugfs(dev, &format!("stat {p}")).unwrap_or_default();
    let cat = |p: &str| debugfs(dev, &format!("cat {p}")).unwrap_or_default();
    let unit = "/etc/systemd/system/spin-hostapd.service";
    let Some(w) = &b.wifi else {
        r.check(!stat(unit).contains("Type: regular"), format!("no WiFi board: no {unit}"));
        return;
    };
    // The regulatory database is an alternative (a symlink) on Debian. Paths under /usr/lib:
    // /lib is a link there (merged /usr).
    let regdb = stat("/usr/lib/firmware/regulatory.db");
    r.check(
        regdb.contains("Type: regular") || regdb.contains("Type: symlink"),
        "WiFi: the regulatory database /usr/lib/firmware/regulatory.db (wireless-regdb)",
    );
    for f in ["/usr/sbin/hostapd", "/usr/sbin/hostapd_cli", "/usr/lib/spin/wifi", unit] {
        r.check(stat(f).contains("Type: regular"), format!("WiFi: root file system has {f}"));
    }
    let device = format!("sys-subsystem-net-devices-{}.device", w.interface);
    r.check(
        stat(&format!("/etc/systemd/system/{device}.wants/spin-hostapd.service")).contains("Type: symlink"),
        format!("WiFi: spin-hostapd.service starts with {device}"),
    );
    let u = cat(unit);
    r.check(
        u.contains("ExecStart=/usr/sbin/hostapd /etc/spin/hostapd.conf")
            && u.contains("ExecStartPre=/usr/lib/spin/wifi hostapd-conf")
            && u.contains(&format!("BindsTo={device}")),
        format!("WiFi: {unit} writes the configuration and runs hostapd on {}", w.interface),
    );
    let board = cat("/etc/spin/board");
    let lines: Vec<&str> = board.lines().collect();
    r.check(
        [
            format!("WIFI_IF={}", w.interface),
            format!("WIFI_CHANNEL={}", w.channel),
            format!("WIFI_COUNTRY={}", w.country),
            format!("WIFI_HW_MODE={}", w.hw_mode()),
        ]
        .iter()
        .all(|want| lines.contains(&want.as_str())),
        format!("WiFi: /etc/spin/board has the radio's settings: {board:?}"),
    );
    let script = cat("/usr/lib/spin/wifi");
    r.check(
        script.contains("wpa_key_mgmt=WPA-PSK SAE")
            && script.contains("ieee80211w=1")
            && script.contains("bridge=br-lan"),
        "WiFi: the generated hostapd configuration is WPA2-PSK + WPA3-SAE with management frame protection, in br-lan",
    );
    r.check(
        cat("/usr/lib/spin/firstboot").contains("/usr/lib/spin/wifi firstboot"),
        "WiFi: the first boot sets up the network",
    );
    // Changed in the UI (set_wifi): spind writes the settings, the path unit restarts hostapd.
    r.check(
        cat("/etc/spin/spind.conf").lines().any(|l| l.trim() == "wifi_settings_file = /etc/spin/wifi.conf"),
        "WiFi: spind.conf names the settings file (the UI's WiFi dialog)",
    );
    r.check(
        cat("/etc/systemd/system/spin-wifi-apply.path").contains("PathChanged=/etc/spin/wifi.conf")
            && cat("/etc/systemd/system/spin-wifi-apply.service").contains("try-restart spin-hostapd.service")
            && stat("/etc/systemd/system/multi-user.target.wants/spin-wifi-apply.path").contains("Type: symlink"),
        "WiFi: spin-wifi-apply.path (enabled) restarts hostapd when /etc/spin/wifi.conf changes",
    );
    if w.firmware_package == "firmware-brcm80211" {
        for f in BRCM_FIRMWARE {
            let s = stat(&format!("/usr/lib/firmware/{f}"));
            r.check(
                s.contains("Type: regular") || (f.ends_with(".bin") && s.contains("Type: symlink")),
                format!("WiFi: firmware /usr/lib/firmware/{f}"),
            );
        }
        let link = debugfs(dev, "ls -l /usr/lib/firmware/brcm").unwrap_or_default();
        r.check(
            link.contains("brcmfmac43455-sdio.bin"),
            "WiFi: firmware /usr/lib/firmware/brcm/brcmfmac43455-sdio.bin",
        );
    }
    // The kernel's modules: /lib/modules/VERSION/kernel/...
    let versions = debugfs(dev, "ls /usr/lib/modules").unwrap_or_default();
    // `ls` shows inode numbers and record lengths beside the names: a version has dots and dashes.
    let version = versions
        .split_whitespace()
        .find(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()) && v.contains('.') && v.contains('-'));
    let Some(version) = version else {
        r.check(false, format!("WiFi: a kernel version under /usr/lib/modules: {versions:?}"));
        return;
    };
    let k = format!("/usr/lib/modules/{version}/kernel");
    let has_module = |dir: &str, name: &str| {
        let listing = debugfs(dev, &format!("ls {k}/{dir}")).unwrap_or_default();
        listing.split_whitespace().any(|f| f.starts_with(&format!("{name}.ko")))
    };
    for (dir, name) in [
        ("net/wireless", "cfg80211"),
        ("net/mac80211", "mac80211"),
        ("drivers/net/wireless/broadcom/brcm80211/brcmfmac", "brcmfmac"),
        ("drivers/net/wireless/broadcom/brcm80211/brcmutil", "brcmutil"),
    ] {
        r.check(has_module(dir, name), format!("WiFi: kernel module {k}/{dir}/{name}.ko*"));
    }
    r.check(
        has_module("drivers/net/wireless", "mac80211_hwsim")
            || has_module("drivers/net/wireless/virtual", "mac80211_hwsim"),
        format!("WiFi: kernel module mac80211_hwsim (the QEMU test's radios) under {k}/drivers/net/wireless"),
    );
    // The other WiFi drivers stay out (dpkg keeps their empty folders).
    r.check(
        !has_module("drivers/net/wireless/intel/iwlwifi", "iwlwifi")
            && !has_module("drivers/net/wireless/ath/ath9k", "ath9k"),
        "WiFi: no other vendors' drivers (iwlwifi, ath9k)",
    );
}

/// The sha256 of what `xz -d` makes of `xz`.
fn xz_content_sha256(xz: &Path) -> Result<String> {
    let sh = crate::paths::shell()?;
    let mut child = cmd!(sh, "xz -dc -T0 {xz}").spawn(Stream::Piped, Stream::Inherit)?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut stdout, &mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) => return Err(anyhow!("reading xz -d {}: {e}", xz.display())),
        }
    }
    let st = child.wait()?;
    if !st.success() {
        return Err(anyhow!("xz -d {} failed ({st})", xz.display()));
    }
    Ok(runner::host::hex(&h.finalize()))
}

/// Compressed image, qcow2 and OVA.
fn check_outputs(b: &DebianBoard, built: &Built, work: &Path, r: &mut Report) -> Result<()> {
    let base = format!("spin-{}", b.name);
    let out = &built.out_dir;
    let (disk, _) = disk_of(built)?;
    let raw_size = fs::metadata(disk)?.len();
    let sh = crate::paths::shell()?;
    if b.outputs.contains(&DebianOutput::ImgXz) {
        let xz = out.join(format!("{base}.img.xz"));
        let sum = fs::read_to_string(out.join(format!("{base}.img.xz.sha256"))).unwrap_or_default();
        r.check(
            sum == format!("{}  {base}.img.xz\n", sha256_file(&xz)?),
            ".img.xz.sha256 matches (sha256sum -c format)",
        );
        let list = cmd!(sh, "xz --robot --list {xz}").read().unwrap_or_default();
        let usize_ = list.lines().find(|l| l.starts_with("totals")).and_then(|l| l.split('\t').nth(4)).unwrap_or("");
        r.check(usize_ == raw_size.to_string(), format!(".img.xz holds {raw_size} bytes (xz --list: {usize_})"));
        // The stream is assembled from cached blocks: it must give back the disk exactly.
        let (unpacked, raw) = (xz_content_sha256(&xz)?, sha256_file(disk)?);
        r.check(unpacked == raw, format!(".img.xz decompresses (xz -d) to the raw disk (sha256 {unpacked} vs {raw})"));
    }
    if b.outputs.contains(&DebianOutput::Qcow2) {
        let q = out.join(format!("{base}.qcow2"));
        let info = cmd!(sh, "qemu-img info --output=json {q}").read().unwrap_or_default();
        r.check(
            info.contains("\"format\": \"qcow2\"") && info.contains(&format!("\"virtual-size\": {raw_size}")),
            "qcow2 with the raw image's size",
        );
        r.check(
            cmd!(sh, "qemu-img compare -q -f raw -F qcow2 {disk} {q}").succeeds().unwrap_or(false),
            "qcow2 holds the same data as the raw image (qemu-img compare)",
        );
    }
    if b.outputs.contains(&DebianOutput::Ova) {
        check_ova(b, &out.join(format!("{base}.ova")), raw_size, work, r)?;
    }
    Ok(())
}

pub fn check_ova(b: &DebianBoard, ova: &Path, raw_size: u64, work: &Path, r: &mut Report) -> Result<()> {
    let sh = crate::paths::shell()?;
    let names: Vec<String> = cmd!(sh, "tar -tf {ova}").read()?.lines().map(String::from).collect();
    let vmdk_name = super::ova::vmdk_name(&b.name);
    let want = [format!("spin-{}.ovf", b.name), vmdk_name.clone(), format!("spin-{}.mf", b.name)];
    r.check(names == want, format!("OVA members in order {want:?}: {names:?}"));
    let head = read_bytes(ova, 0, 512)?;
    r.check(&head[257..263] == b"ustar\0" && &head[263..265] == b"00", "OVA is a POSIX ustar archive");
    let dir = work.join("ova");
    mkdirs(&dir)?;
    cmd!(sh, "tar -xf {ova} -C {dir}").read()?;
    let ovf = fs::read_to_string(dir.join(&want[0])).unwrap_or_default();
    let vmdk = dir.join(&vmdk_name);
    let vmdk_size = fs::metadata(&vmdk).map(|m| m.len()).unwrap_or(0);
    r.check(
        ovf.contains(&format!("ovf:href=\"{vmdk_name}\" ovf:size=\"{vmdk_size}\"")),
        "OVF references the VMDK with its size",
    );
    r.check(ovf.contains(&format!("ovf:capacity=\"{raw_size}\"")), "OVF disk capacity is the raw image size");
    r.check(ovf.contains("vmdk.html#streamOptimized"), "OVF disk format is streamOptimized");
    let disk_uuid = fixed_uuid(&b.name, "vbox-disk");
    r.check(
        ovf.contains(&format!("vbox:uuid=\"{disk_uuid}\""))
            && ovf.contains(&format!("<Image uuid=\"{{{disk_uuid}}}\"/>")),
        "vbox:Machine attaches the DiskSection's disk (same uuid)",
    );
    r.check(ovf.contains("<Firmware type=\"EFI\"/>"), "vbox:Machine boots with EFI firmware");
    r.check(
        ovf.contains("<rasd:Connection>NAT</rasd:Connection>")
            && ovf.contains("<rasd:Connection>spin-lan</rasd:Connection>"),
        "two NICs: NAT (WAN) and spin-lan (LAN)",
    );
    r.check(
        ovf.find("<NAT/>") < ovf.find("<InternalNetwork name=\"spin-lan\"/>") && ovf.contains("<NAT/>"),
        "NIC 1 on NAT, NIC 2 on the internal network spin-lan",
    );
    r.check(
        ovf.contains("<vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>"),
        "virtual system type virtualbox-2.2",
    );
    let mf = fs::read_to_string(dir.join(&want[2])).unwrap_or_default();
    for f in [&want[0], &vmdk_name] {
        let path = dir.join(f);
        let sum = cmd!(sh, "sha1sum {path}").read()?.split_whitespace().next().unwrap_or("").to_string();
        r.check(mf.contains(&format!("SHA1 ({f}) = {sum}\n")), format!("manifest has the SHA1 of {f}"));
    }
    let vh = read_bytes(&vmdk, 0, 1024).unwrap_or_default();
    r.check(
        vh.starts_with(b"KDMV") && u32::from_le_bytes([vh[4], vh[5], vh[6], vh[7]]) == 3,
        "VMDK header: magic KDMV, version 3",
    );
    let desc = String::from_utf8_lossy(&read_bytes(&vmdk, 512, 1024).unwrap_or_default()).into_owned();
    r.check(desc.contains("createType=\"streamOptimized\""), "VMDK descriptor: createType streamOptimized");
    r.check(
        desc.contains(&format!("CID={}", &fixed_uuid(&b.name, "vmdk-cid")[..8])),
        "VMDK content id is the fixed one (reproducible)",
    );
    let info = cmd!(sh, "qemu-img info --output=json {vmdk}").read().unwrap_or_default();
    r.check(info.contains(&format!("\"virtual-size\": {raw_size}")), "VMDK virtual size is the raw image size");
    Ok(())
}

/// Assembles the disk a second time from the same cached root tar, in a scratch directory, and
/// compares: the assembly stage must be bit-for-bit reproducible.
pub fn check_reproducible(board: &DebianBoard, built: &Built) -> Result<()> {
    let ctx = Ctx::new(board)?;
    let scratch: PathBuf = ctx.dir.join("repro.tmp");
    let _ = fs::remove_dir_all(&scratch);
    mkdirs(&scratch)?;
    let (disk, root_tar) = disk_of(built)?;
    let root = Stage { path: root_tar.to_path_buf(), key: String::new(), cached: true };
    // Same key material as the build (the key only names files; the content is what matters).
    let again = super::disk::build(&ctx, &Stage { key: root_key_of(root_tar), ..root }, &scratch)?;
    let a = sha256_file(disk)?;
    let b = sha256_file(&again.path)?;
    let _ = fs::remove_dir_all(&scratch);
    if a == b {
        eprintln!("xtask image: disk assembly is reproducible (sha256 {a})");
        Ok(())
    } else {
        Err(anyhow!("disk assembly is not reproducible: {} has sha256 {a}, a second assembly {b}", file_name(disk)))
    }
}

fn root_key_of(root_tar: &Path) -> String {
    file_name(root_tar).trim_start_matches("root-").trim_end_matches(".tar").to_string()
}
