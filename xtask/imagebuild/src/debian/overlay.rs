//! Stage overlay: the root file system with the router's files: the rootfs tar, minus the files
//! the overlay replaces, plus the overlay (files from `image/debian/overlay`, `*.in` templates
//! filled from the board, generated files, spind, unit symlinks), all owned by root with fixed
//! mtimes.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use runner::cmd;

use super::{image_dir, Ctx};
use crate::board::{Bootloader, DebianBoard};
use crate::stage::{file_name, fixed_uuid, mkdirs, prune, Key, Stage, ASSEMBLY_VERSION};

/// Values substituted into overlay files named `*.in` (`@NAME@`).
fn template_vars(b: &DebianBoard) -> Vec<(&'static str, String)> {
    vec![
        ("BOARD", b.name.clone()),
        ("WAN", b.network.wan.clone()),
        ("LAN_PORTS", b.network.lan.join(" ")),
        ("ROOT_LABEL", b.root_part().label.clone()),
        ("BOOT_LABEL", b.boot_part().label.clone()),
    ]
}

/// Files generated from the board (on top of `image/debian/overlay`).
pub(super) fn generated_files(b: &DebianBoard) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let root = &b.root_part().label;
    let boot = &b.boot_part().label;
    let (root_spec, boot_spec, boot_dir) = if b.disk.bootloader == Bootloader::RaspiFirmware {
        (format!("LABEL={root}"), format!("LABEL={boot}"), "/boot/firmware")
    } else {
        (
            format!("PARTUUID={}", fixed_uuid(&b.name, "part-root")),
            format!("PARTUUID={}", fixed_uuid(&b.name, "part-boot")),
            "/boot/efi",
        )
    };
    v.push((
        "etc/fstab".into(),
        format!(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             {root_spec} / ext4 rw,noatime,errors=remount-ro 0 1\n\
             {boot_spec} {boot_dir} vfat rw,noatime,umask=0077,nofail 0 2\n"
        ),
    ));
    if b.disk.bootloader == Bootloader::RaspiFirmware {
        // raspi-firmware regenerates cmdline.txt from this on kernel upgrades on the device.
        let consoles: Vec<&str> = b.kernel.consoles.iter().map(|c| c.as_str()).collect();
        v.push((
            "etc/default/raspi-firmware".into(),
            format!(
                "# Written by cargo xtask image (board {}).\nROOTPART=LABEL={root}\nCONSOLES=\"{}\"\nKERNEL_ARGS=\"{}\"\n",
                b.name,
                consoles.join(" "),
                b.kernel.cmdline
            ),
        ));
    }
    // The boot partition is mounted `nofail`, so local-fs.target does not wait for it: the first
    // boot must, as it reads spin-admin.txt there and writes spin-wifi.txt (without this, under
    // load the settings file was not yet there and the first boot made a network of its own).
    v.push((
        "etc/systemd/system/spin-firstboot.service.d/boot-partition.conf".into(),
        format!(
            "# Written by cargo xtask image: the first boot reads and writes the boot partition ({boot_dir}).\n\
             [Unit]\nAfter={}\n",
            mount_unit(boot_dir)
        ),
    ));
    // First boot: systemd creates the machine id (mmdebstrap leaves an empty file).
    v.push(("etc/machine-id".into(), "uninitialized\n".into()));
    let mut board = format!(
        "BOARD={}\nWAN={}\nLAN_PORTS=\"{}\"\nBOOT_DIR={boot_dir}\n",
        b.name,
        b.network.wan,
        b.network.lan.join(" ")
    );
    if let Some(w) = &b.wifi {
        // Read by /usr/lib/spin/wifi (the first boot's network, hostapd's configuration).
        board.push_str(&format!(
            "WIFI_IF={}\nWIFI_HW_MODE={}\nWIFI_CHANNEL={}\nWIFI_COUNTRY={}\n",
            w.interface,
            w.hw_mode(),
            w.channel,
            w.country
        ));
        v.push(("etc/systemd/system/spin-hostapd.service".into(), hostapd_unit(&w.interface)));
        v.extend(wifi_apply_units());
    }
    v.push(("etc/spin/board".into(), board));
    v
}

/// systemd's mount unit of an absolute path (`systemd-escape --path --suffix=mount`, for the
/// plain paths boards use): `/boot/firmware` → `boot-firmware.mount`.
fn mount_unit(path: &str) -> String {
    let escaped: Vec<String> = path.trim_matches('/').split('/').map(|c| c.replace('-', "\\x2d")).collect();
    format!("{}.mount", escaped.join("-"))
}

/// The access point's unit: started when the radio's interface appears (the driver loads late,
/// and in the QEMU test only when mac80211_hwsim is loaded), stopped when it goes.
fn hostapd_unit(interface: &str) -> String {
    let device = format!("sys-subsystem-net-devices-{}.device", interface.replace('-', "\\x2d"));
    format!(
        "# The router's WiFi access point on {interface}, bridged into br-lan (written by cargo xtask image from\n\
         # the board's [wifi]). Its configuration is made from /etc/spin/wifi.conf at every start.\n\
         [Unit]\n\
         Description=SPIN router WiFi access point (hostapd on {interface})\n\
         BindsTo={device}\n\
         After={device} spin-firstboot.service systemd-networkd.service\n\
         ConditionPathExists=/etc/spin/wifi.conf\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStartPre=/usr/lib/spin/wifi hostapd-conf\n\
         ExecStart=/usr/sbin/hostapd /etc/spin/hostapd.conf\n\
         ExecReload=/usr/lib/spin/wifi hostapd-conf\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy={device}\n"
    )
}

/// spind's `set_wifi` (the UI's WiFi dialog) rewrites /etc/spin/wifi.conf; these restart the
/// access point when it changes, so that the new name and passphrase hold without a reboot
/// (`try-restart`: an access point that is not running, no radio, stays stopped).
fn wifi_apply_units() -> Vec<(String, String)> {
    vec![
        (
            "etc/systemd/system/spin-wifi-apply.path".into(),
            "# Written by cargo xtask image: a change of the WiFi settings (spind's set_wifi) restarts the access point.\n\
             [Unit]\n\
             Description=SPIN router: watch the WiFi settings\n\
             \n\
             [Path]\n\
             PathChanged=/etc/spin/wifi.conf\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n"
                .into(),
        ),
        (
            "etc/systemd/system/spin-wifi-apply.service".into(),
            "# Written by cargo xtask image: started by spin-wifi-apply.path when /etc/spin/wifi.conf changes.\n\
             [Unit]\n\
             Description=SPIN router: apply the changed WiFi settings (restart hostapd)\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart=/bin/systemctl try-restart spin-hostapd.service\n"
                .into(),
        ),
    ]
}

/// Every file of `image/debian/overlay` (relative paths, sorted).
fn overlay_sources() -> Result<Vec<PathBuf>> {
    let base = image_dir().join("overlay");
    let mut out = Vec::new();
    walk(&base, &base, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?;
    for e in rd {
        let p = e?.path();
        let md = fs::symlink_metadata(&p)?;
        if md.is_dir() {
            walk(base, &p, out)?;
        } else {
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
        }
    }
    Ok(())
}

/// Units of the overlay to enable: (unit, target) from `WantedBy=` lines.
fn units_to_enable(stage: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let dir = stage.join("etc/systemd/system");
    if let Ok(rd) = fs::read_dir(&dir) {
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        names.sort();
        for p in names {
            let text = fs::read_to_string(&p).unwrap_or_default();
            for line in text.lines() {
                if let Some(targets) = line.trim().strip_prefix("WantedBy=") {
                    for t in targets.split_whitespace() {
                        v.push((file_name(&p), t.to_string()));
                    }
                }
            }
        }
    }
    v
}

/// The root file system with the router's files: rootfs tar, minus the files the overlay
/// replaces, plus the overlay (files from `image/debian/overlay`, `*.in` templates filled from
/// the board, generated files, spind, unit symlinks), all owned by root with fixed mtimes.
pub fn build(ctx: &Ctx, rootfs: &Stage, spind: &Stage) -> Result<Stage> {
    let b = ctx.board;
    let src = image_dir().join("overlay");
    let sources = overlay_sources()?;
    let mut k = Key::new("overlay");
    k.add(ASSEMBLY_VERSION).add(&rootfs.key).add(&spind.key);
    for (n, v) in template_vars(b) {
        k.add(n).add(v);
    }
    for (p, text) in generated_files(b) {
        k.add(p).add(text);
    }
    for rel in &sources {
        let p = src.join(rel);
        let md = fs::symlink_metadata(&p)?;
        k.add(rel.to_string_lossy().as_bytes()).add(format!("{:o}", md.mode() & 0o111));
        if md.file_type().is_symlink() {
            k.add(fs::read_link(&p)?.to_string_lossy().as_bytes());
        } else {
            k.add_file(&p)?;
        }
    }
    let key = k.finish();
    let path = ctx.dir.join(format!("root-{key}.tar"));
    if path.exists() {
        eprintln!("  cached: {}", file_name(&path));
        return Ok(Stage { path, key, cached: true });
    }

    // 1. Stage the overlay in a directory.
    let stage = ctx.dir.join("overlay.tmp");
    let _ = fs::remove_dir_all(&stage);
    mkdirs(&stage)?;
    let vars = template_vars(b);
    for rel in &sources {
        let from = src.join(rel);
        let md = fs::symlink_metadata(&from)?;
        let (rel_out, templated) = match rel.to_str().and_then(|s| s.strip_suffix(".in")) {
            Some(s) => (PathBuf::from(s), true),
            None => (rel.clone(), false),
        };
        let to = stage.join(&rel_out);
        mkdirs(to.parent().unwrap())?;
        if md.file_type().is_symlink() {
            let target = fs::read_link(&from)?;
            std::os::unix::fs::symlink(target, &to)?;
            continue;
        }
        let mut data = fs::read(&from).map_err(|e| anyhow!("cannot read {}: {e}", from.display()))?;
        if templated {
            let mut text = String::from_utf8(data).map_err(|_| anyhow!("{}: template is not UTF-8", from.display()))?;
            for (n, v) in &vars {
                text = text.replace(&format!("@{n}@"), v);
            }
            if let Some(i) = text.find('@').filter(|&i| {
                text[i + 1..]
                    .split('@')
                    .next()
                    .is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            }) {
                return Err(anyhow!(
                    "{}: unknown template variable near {:?}",
                    from.display(),
                    &text[i..(i + 20).min(text.len())]
                ));
            }
            data = text.into_bytes();
        }
        write_file(&to, &data, if md.mode() & 0o111 != 0 { 0o755 } else { 0o644 })?;
    }
    for (rel, text) in generated_files(b) {
        let to = stage.join(&rel);
        mkdirs(to.parent().unwrap())?;
        write_file(&to, text.as_bytes(), 0o644)?;
    }
    let bin = stage.join("usr/sbin/spind");
    mkdirs(bin.parent().unwrap())?;
    write_file(&bin, &fs::read(&spind.path)?, 0o755)?;
    for (unit, target) in units_to_enable(&stage) {
        let wants = stage.join("etc/systemd/system").join(format!("{target}.wants"));
        mkdirs(&wants)?;
        let link = wants.join(&unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link)?;
    }
    // Directories: 0755 (files keep what was set above); the state directory is private.
    set_dir_modes(&stage)?;

    // 2. Which overlay paths replace rootfs members, which are new.
    let sh = crate::paths::shell()?;
    let rootfs_tar = &rootfs.path;
    let listing = cmd!(sh, "tar -tf {rootfs_tar}").read()?;
    let in_rootfs: HashSet<&str> = listing.lines().collect();
    let mut staged = Vec::new();
    walk_all(&stage, &stage, &mut staged)?;
    staged.sort();
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    for (rel, is_dir) in &staged {
        let name = format!("./{}", rel.display());
        if *is_dir {
            if !in_rootfs.contains(format!("{name}/").as_str()) {
                adds.push(name);
            }
        } else {
            if in_rootfs.contains(format!("{name}/").as_str()) {
                return Err(anyhow!("overlay file {name} would replace a directory of the root file system"));
            }
            if in_rootfs.contains(name.as_str()) {
                deletes.push(name.clone());
            }
            adds.push(name);
        }
    }

    // 3. The overlay as a tar of its own: owned by root, fixed mtimes, parents first.
    let log = ctx.logs.join("overlay.log");
    let _ = fs::remove_file(&log);
    let list = ctx.dir.join("overlay-adds.list");
    fs::write(&list, adds.join("\n") + "\n")?;
    let overlay_tar = ctx.dir.join("overlay.tar.tmp");
    let mtime = format!("--mtime=@{}", ctx.epoch);
    cmd!(sh, "tar -cf {overlay_tar} --no-recursion --owner=0 --group=0 --numeric-owner --format=pax --pax-option=delete=atime,delete=ctime {mtime} -C {stage} --verbatim-files-from -T {list}")
        .run_logged("tar (the overlay)", &log)?;

    // 4. The rootfs tar without the members the overlay replaces, then the overlay. bsdtar
    //    copies members of an archive (`@file`) with their pax headers (file capabilities,
    //    ACLs); GNU tar --delete mangles such archives.
    let tmp = ctx.dir.join(format!("root-{key}.tar.tmp"));
    let _ = fs::remove_file(&tmp);
    let excludes: Vec<String> = deletes.iter().flat_map(|d| ["--exclude".to_string(), d.clone()]).collect();
    let from_rootfs = format!("@{}", rootfs.path.display());
    cmd!(sh, "bsdtar -cf {tmp} --format=pax {excludes...} {from_rootfs}")
        .run_logged("bsdtar (rootfs without the files the overlay replaces)", &log)?;
    let from_overlay = format!("@{}", overlay_tar.display());
    cmd!(sh, "bsdtar -rf {tmp} --format=pax {from_overlay}").run_logged("bsdtar -r (append the overlay)", &log)?;
    let _ = fs::remove_file(&overlay_tar);
    fs::rename(&tmp, &path)?;
    prune(&ctx.dir, "root-", &path);
    eprintln!("  overlay: {} files added, {} replaced", adds.len(), deletes.len());
    Ok(Stage { path, key, cached: false })
}

pub(super) fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    fs::write(p, data).map_err(|e| anyhow!("cannot write {}: {e}", p.display()))?;
    Ok(fs::set_permissions(p, fs::Permissions::from_mode(mode))?)
}

fn set_dir_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false) {
            set_dir_modes(&p)?;
        }
    }
    Ok(())
}

fn walk_all(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, bool)>) -> Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let is_dir = fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
        out.push((p.strip_prefix(base).unwrap().to_path_buf(), is_dir));
        if is_dir {
            walk_all(base, &p, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::debian_for_tests as debian;

    fn file<'a>(files: &'a [(String, String)], path: &str) -> Option<&'a str> {
        files.iter().find(|(p, _)| p == path).map(|(_, t)| t.as_str())
    }

    #[test]
    fn the_first_boot_waits_for_the_boot_partition_of_the_fstab() {
        for (board, unit) in [("rpi3", "boot-firmware.mount"), ("x86_64", "boot-efi.mount")] {
            let files = generated_files(&debian(board));
            let fstab = file(&files, "etc/fstab").unwrap();
            let boot = fstab.lines().find(|l| l.contains(" vfat ")).unwrap();
            let dir = boot.split_whitespace().nth(1).unwrap();
            assert!(boot.contains("nofail"), "{boot}");
            assert_eq!(mount_unit(dir), unit);
            let dropin = file(&files, "etc/systemd/system/spin-firstboot.service.d/boot-partition.conf").unwrap();
            assert!(dropin.lines().any(|l| l == format!("After={unit}")), "{board}: {dropin}");
        }
        assert_eq!(mount_unit("/srv/my-boot/"), "srv-my\\x2dboot.mount");
    }

    #[test]
    fn a_wifi_board_gets_the_access_point_unit_and_its_settings() {
        let files = generated_files(&debian("rpi3"));
        let board = file(&files, "etc/spin/board").unwrap();
        for line in [
            "WIFI_IF=wlan0\n",
            "WIFI_HW_MODE=g\n",
            "WIFI_CHANNEL=6\n",
            "WIFI_COUNTRY=NL\n",
            "BOOT_DIR=/boot/firmware\n",
        ] {
            assert!(board.contains(line), "{line:?} in {board:?}");
        }
        let unit = file(&files, "etc/systemd/system/spin-hostapd.service").unwrap();
        assert!(unit.contains("BindsTo=sys-subsystem-net-devices-wlan0.device\n"), "{unit}");
        assert!(unit.contains("WantedBy=sys-subsystem-net-devices-wlan0.device\n"), "{unit}");
        assert!(unit.contains("ExecStart=/usr/sbin/hostapd /etc/spin/hostapd.conf\n"), "{unit}");
        // A changed settings file (the UI's set_wifi) restarts the access point.
        let watch = file(&files, "etc/systemd/system/spin-wifi-apply.path").unwrap();
        assert!(watch.contains("PathChanged=/etc/spin/wifi.conf\n") && watch.contains("WantedBy=multi-user.target\n"));
        let apply = file(&files, "etc/systemd/system/spin-wifi-apply.service").unwrap();
        assert!(apply.contains("ExecStart=/bin/systemctl try-restart spin-hostapd.service\n"), "{apply}");
        let x = generated_files(&debian("x86_64"));
        assert!(!file(&x, "etc/spin/board").unwrap().contains("WIFI_"));
        assert!(file(&x, "etc/systemd/system/spin-hostapd.service").is_none());
        assert!(file(&x, "etc/systemd/system/spin-wifi-apply.path").is_none());
        assert_eq!(
            hostapd_unit("wl-a").lines().find(|l| l.starts_with("BindsTo=")),
            Some("BindsTo=sys-subsystem-net-devices-wl\\x2da.device")
        );
    }

    /// A root file system in a temporary directory with the rpi3's board file and a boot
    /// partition, for `/usr/lib/spin/wifi` (SPIN_ROOT).
    struct Root(PathBuf);

    impl Root {
        fn new(name: &str) -> Root {
            let dir = std::env::temp_dir().join(format!("spin-wifi-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("etc/spin")).unwrap();
            fs::create_dir_all(dir.join("boot/firmware")).unwrap();
            let files = generated_files(&debian("rpi3"));
            fs::write(dir.join("etc/spin/board"), file(&files, "etc/spin/board").unwrap()).unwrap();
            Root(dir)
        }
        /// `wifi ARGS...`: its output (console lines included: SPIN_CONSOLE=echo).
        fn wifi(&self, args: &[&str]) -> String {
            let sh = crate::paths::shell().unwrap();
            let script = image_dir().join("overlay/usr/lib/spin/wifi");
            let o = cmd!(sh, "sh {script} {args...}")
                .env("SPIN_ROOT", &self.0)
                .env("SPIN_CONSOLE", "echo")
                .output()
                .unwrap();
            assert!(o.status.success(), "wifi {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
        fn read(&self, p: &str) -> Option<String> {
            fs::read_to_string(self.0.join(p)).ok()
        }
        fn mode(&self, p: &str) -> u32 {
            fs::metadata(self.0.join(p)).unwrap().mode() & 0o777
        }
        fn conf(&self, key: &str) -> Option<String> {
            let text = self.read("etc/spin/hostapd.conf")?;
            text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(String::from)
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_first_boot_takes_the_wifi_settings_from_the_boot_partition() {
        let root = Root::new("file");
        let settings = root.0.join("boot/firmware/spin-admin.txt");
        // Written on Windows: a BOM and CRLF; an admin line and a comment beside the WiFi ones.
        fs::write(
            &settings,
            "\u{feff}admin:$6$salt$hash\r\n# our network\r\nwifi_ssid=Our Home\r\nwifi_passphrase=correct horse 42\r\nwifi_country=de\r\n",
        )
        .unwrap();
        let out = root.wifi(&["firstboot", settings.to_str().unwrap(), "/nonexistent/spin-admin.txt"]);
        assert!(out.contains("SPIN-WIFI network: Our Home passphrase: as in the settings file (country DE)"), "{out}");
        assert!(!out.contains("correct horse"), "the user's passphrase is not shown: {out}");
        assert_eq!(root.conf("ssid2").as_deref(), Some(hex("Our Home").as_str()));
        assert_eq!(root.conf("wpa_passphrase").as_deref(), Some("correct horse 42"));
        assert_eq!(root.conf("country_code").as_deref(), Some("DE"));
        for (k, v) in [
            ("interface", "wlan0"),
            ("bridge", "br-lan"),
            ("driver", "nl80211"),
            ("ieee80211d", "1"),
            ("hw_mode", "g"),
            ("channel", "6"),
            ("wpa", "2"),
            ("wpa_key_mgmt", "WPA-PSK SAE"),
            ("rsn_pairwise", "CCMP"),
            ("ieee80211w", "1"),
            ("sae_require_mfp", "1"),
        ] {
            assert_eq!(root.conf(k).as_deref(), Some(v), "{k}");
        }
        // Secrets are root's only; nothing on the boot partition (the user knows the passphrase).
        assert_eq!(root.mode("etc/spin/hostapd.conf"), 0o600);
        assert_eq!(root.mode("etc/spin/wifi.conf"), 0o600);
        assert!(root.read("boot/firmware/spin-wifi.txt").is_none());
        // hostapd's start writes the same configuration again from wifi.conf.
        let first = root.read("etc/spin/hostapd.conf").unwrap();
        root.wifi(&["hostapd-conf"]);
        assert_eq!(root.read("etc/spin/hostapd.conf").unwrap(), first);
        assert!(!root.0.join("etc/spin/hostapd.conf.tmp").exists());
    }

    #[test]
    fn a_short_passphrase_is_refused_and_a_random_one_is_used() {
        let root = Root::new("short");
        let settings = root.0.join("boot/firmware/spin-admin.txt");
        fs::write(&settings, "wifi_ssid=Garden\nwifi_passphrase=1234567\n").unwrap();
        let out = root.wifi(&["firstboot", settings.to_str().unwrap()]);
        assert!(
            out.contains("SPIN-WIFI: the WiFi passphrase in the settings file is refused: it must have 8 to 63 printable ASCII characters (it has 7)"),
            "{out}"
        );
        let pass = root.conf("wpa_passphrase").unwrap();
        assert_eq!(pass.len(), 16, "{pass}");
        assert_eq!(root.conf("ssid2").as_deref(), Some(hex("Garden").as_str()));
        assert_eq!(root.conf("country_code").as_deref(), Some("NL"), "the board's default country");
        assert!(out.contains(&format!("SPIN-WIFI network: Garden passphrase: {pass} (country NL)")), "{out}");
        let txt = root.read("boot/firmware/spin-wifi.txt").unwrap();
        assert!(txt.contains(&format!("passphrase: {pass}\r\n")) && txt.contains("Garden"), "{txt}");
    }

    #[test]
    fn without_settings_the_network_is_spin_xxxx_with_a_random_passphrase() {
        let root = Root::new("default");
        let out = root.wifi(&["firstboot", "/nonexistent/spin-admin.txt"]);
        let conf = root.read("etc/spin/hostapd.conf").unwrap();
        let name = conf.lines().find_map(|l| l.strip_prefix("# network name: ")).unwrap().to_string();
        assert!(
            name.len() == 9 && name.starts_with("SPIN-") && name[5..].chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}"
        );
        assert_eq!(root.conf("ssid2").unwrap(), hex(&name));
        let pass = root.conf("wpa_passphrase").unwrap();
        assert!(pass.len() == 16 && pass.chars().all(|c| c.is_ascii_alphanumeric()), "{pass}");
        assert_eq!(root.conf("wpa_key_mgmt").as_deref(), Some("WPA-PSK SAE"), "never an open network");
        assert!(out.contains(&format!("SPIN-WIFI network: {name} passphrase: {pass} (country NL)")), "{out}");
        let txt = root.read("boot/firmware/spin-wifi.txt").unwrap();
        assert!(
            txt.contains(&format!("network (SSID): {name}\r\n")) && txt.contains(&format!("passphrase: {pass}\r\n"))
        );
        // Another first boot makes another network.
        let again = Root::new("default2");
        again.wifi(&["firstboot"]);
        assert_ne!(again.conf("wpa_passphrase").unwrap(), pass);
    }

    #[test]
    fn bad_names_and_countries_fall_back_to_the_defaults() {
        let root = Root::new("bad");
        let settings = root.0.join("boot/firmware/spin-admin.txt");
        fs::write(
            &settings,
            format!("wifi_ssid={}\nwifi_passphrase=long enough\nwifi_country=Netherlands\n", "x".repeat(33)),
        )
        .unwrap();
        let out = root.wifi(&["firstboot", settings.to_str().unwrap()]);
        assert!(out.contains("the network name in the settings file is not 1-32 printable ASCII characters"), "{out}");
        assert!(out.contains("the WiFi country \"NETHERLANDS\" is not a two-letter code"), "{out}");
        assert_eq!(root.conf("country_code").as_deref(), Some("NL"));
        assert_eq!(root.conf("wpa_passphrase").as_deref(), Some("long enough"));
        let name = root.read("etc/spin/hostapd.conf").unwrap();
        assert!(name.contains("# network name: SPIN-"), "{name}");
    }
}
