//! Unit tests of the OpenWrt builder: board files, the package, the overlay, the ImageBuilder
//! invocation (against a fake ImageBuilder whose Makefile only records its arguments: a test of
//! how we call it, not of building a real image). The cross-built binary under qemu-user is
//! tested by the `cargo xtask test` layer (see `crate::test`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use runner::cmd;

use super::cross::spind_conf_from_uci;
use super::imagebuilder::{imagebuilder_command, resolve_imagebuilder, run_imagebuilder};
use super::package::{build_ipk, build_overlay, openwrt_dir, spind_version, verify_ipk};
use super::*;
use crate::board::{self, OpenWrtArch, OpenWrtOutput};
use crate::elf;

fn sh() -> runner::Shell {
    runner::Shell::new().unwrap()
}

const BOARDS: [&str; 3] = ["glinet-mt3000", "glinet-mt6000", "glinet-ar150"];

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-openwrt-{}-{name}", std::process::id()));
    crate::stage::reset_dir(&d).unwrap();
    d
}

fn board_text(name: &str) -> String {
    std::fs::read_to_string(crate::paths::root().join("board-configs").join(format!("{name}.toml"))).unwrap()
}

#[test]
fn shipped_board_files() {
    for name in BOARDS {
        let b = OpenWrtBoard::load(name).unwrap();
        assert_eq!(b.name, name);
        assert_eq!(b.release, "24.10.7");
        assert_eq!(b.outputs, [OpenWrtOutput::Ipk, OpenWrtOutput::Overlay, OpenWrtOutput::Sysupgrade]);
        assert!(b.openwrt.imagebuilder_sha256.is_some(), "{name}: pinned sha256");
        assert!(b.openwrt.packages.contains(&"luci".to_string()));
        assert_eq!(b.openwrt.profile, format!("glinet_gl-{}", name.trim_start_matches("glinet-")));
    }
    let mt3000 = OpenWrtBoard::load("glinet-mt3000").unwrap();
    assert_eq!((mt3000.arch, mt3000.rust_target.as_str()), (OpenWrtArch::Aarch64, "aarch64-unknown-linux-musl"));
    assert_eq!((mt3000.openwrt.target.as_str(), mt3000.openwrt.subtarget.as_str()), ("mediatek", "filogic"));
    assert_eq!(mt3000.openwrt.package_arch, "aarch64_cortex-a53");
    assert_eq!(mt3000.imagebuilder_file(), "openwrt-imagebuilder-24.10.7-mediatek-filogic.Linux-x86_64.tar.zst");
    let ar150 = OpenWrtBoard::load("glinet-ar150").unwrap();
    assert_eq!((ar150.arch, ar150.rust_target.as_str()), (OpenWrtArch::Mips, "mips-unknown-linux-musl"));
    assert_eq!(
        (ar150.openwrt.target.as_str(), ar150.openwrt.subtarget.as_str(), ar150.openwrt.package_arch.as_str()),
        ("ath79", "generic", "mips_24kc")
    );
    assert_eq!(ar150.arch.elf(), (32, true, elf::EM_MIPS));
    assert_eq!(mt3000.arch.elf(), (64, false, elf::EM_AARCH64));
}

/// The builder's view of a board file (the format and its errors are tested in `board`).
#[test]
fn board_view() {
    let text = board_text("glinet-ar150");
    let file = Path::new("board-configs/glinet-ar150.toml");
    // An empty sha256 is allowed (explicitly unverified): downloads are then refused.
    let unpinned = text.replace(
        "imagebuilder_sha256 = \"5cf5b6e205435522d9671355fdf78fe579deead4715ce8e61a98ae9d661f1e48\"",
        "imagebuilder_sha256 = \"\"",
    );
    let b = OpenWrtBoard::from_board(board::parse(file, &unpinned).unwrap()).unwrap();
    assert_eq!(b.openwrt.imagebuilder_sha256, None);
    assert_eq!(b.file, Path::new("board-configs/glinet-ar150.toml"));
    let only_ipk = text.replace("outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]", "outputs = [\"ipk\"]");
    let b = OpenWrtBoard::from_board(board::parse(file, &only_ipk).unwrap()).unwrap();
    assert_eq!(b.outputs, [OpenWrtOutput::Ipk]);
    // A Debian board is not an OpenWrt board.
    let err = OpenWrtBoard::load("x86_64").unwrap_err().to_string();
    assert!(err.contains("x86_64.toml: field `base`: \"debian\" is not an OpenWrt board"), "{err}");
    // Errors in the file come from the board format.
    let err = OpenWrtBoard::load("no-such-board").unwrap_err().to_string();
    assert!(err.contains("glinet-mt3000"), "{err}");
}

/// A stand-in for a cross-built spind: an ELF header of the board's architecture.
fn fake_spind(board: &OpenWrtBoard, dir: &Path) -> PathBuf {
    let (bits, be, machine) = board.arch.elf();
    let p = dir.join("spind");
    std::fs::write(&p, elf::fake_elf(bits, be, machine, 1, 3)).unwrap();
    p
}

#[test]
fn package_structure() {
    for name in BOARDS {
        let board = OpenWrtBoard::load(name).unwrap();
        let s = scratch(&format!("pkg-{name}"));
        let spind = fake_spind(&board, &s);
        let ipk_path = build_ipk(&board, &spind, &s.join("work"), &s.join("out"), 1_700_000_000).unwrap();
        assert_eq!(
            ipk_path.file_name().unwrap().to_str().unwrap(),
            format!("spind_{}-1_{}.ipk", spind_version().unwrap(), board.openwrt.package_arch)
        );
        verify_ipk(&board, &ipk_path, &s.join("inspect")).unwrap();

        let info = ipk::inspect(&ipk_path, &s.join("inspect2")).unwrap();
        let depends = &info.control["Depends"];
        for dep in ["libc", "nftables", "kmod-nft-core", "kmod-nfnetlink-log", "kmod-nf-conntrack-netlink"] {
            assert!(depends.split(", ").any(|d| d == dep), "{depends}");
        }
        // Field order as OpenWrt writes it: Package first, Description last.
        assert!(info.control_text.starts_with("Package: spind\nVersion: "));
        assert!(info.control_text.contains("\nDescription: SPIN daemon"));
        // The init script is a procd service that runs spind with the spind.conf made from UCI.
        let init = std::fs::read_to_string(info.data_path("/etc/init.d/spind")).unwrap();
        for want in [
            "#!/bin/sh /etc/rc.common",
            "USE_PROCD=1",
            "START=95",
            "procd_set_param command \"$PROG\" -c \"$CONF\"",
            "procd_set_param respawn",
            "config_load spin",
            "procd_add_reload_trigger spin",
        ] {
            assert!(init.contains(want), "init script lacks {want:?}");
        }
        let uci = std::fs::read_to_string(info.data_path("/etc/config/spin")).unwrap();
        assert!(uci.contains("config spind 'spind'"));

        // A wrong-architecture binary is refused.
        let other =
            OpenWrtBoard::load(if board.arch == OpenWrtArch::Mips { "glinet-mt3000" } else { "glinet-ar150" }).unwrap();
        let wrong = fake_spind(&other, &s.join("work"));
        let bad = build_ipk(&board, &wrong, &s.join("work2"), &s.join("out2"), 1).unwrap();
        let err = format!("{:#}", verify_ipk(&board, &bad, &s.join("inspect3")).unwrap_err());
        assert!(err.contains("is not a"), "{err}");
        std::fs::remove_dir_all(&s).ok();
    }
}

#[test]
fn package_is_reproducible() {
    let board = OpenWrtBoard::load("glinet-mt3000").unwrap();
    let s = scratch("repro");
    let spind = fake_spind(&board, &s);
    let a = build_ipk(&board, &spind, &s.join("w1"), &s.join("o1"), 1_700_000_000).unwrap();
    let b = build_ipk(&board, &spind, &s.join("w2"), &s.join("o2"), 1_700_000_000).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn shell_scripts_parse() {
    let dir = openwrt_dir();
    for f in [
        "package/etc/init.d/spind",
        "package/etc/uci-defaults/90-spind",
        "package/etc/uci-defaults/91-spind-admin",
        "control/postinst",
        "control/prerm",
        "overlay/etc/uci-defaults/95-valibox",
    ] {
        let p = dir.join(f);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{f} is not executable in git");
        let sh = sh();
        assert!(cmd!(sh, "sh -n {p}").succeeds().unwrap(), "sh -n {f}");
    }
    let fw = std::fs::read_to_string(dir.join("package/etc/uci-defaults/90-spind")).unwrap();
    for want in [
        "firewall.spind.src='lan'",
        "dest_port='13026'",
        "dest_port='1883'",
        "dest_port='1884'",
        "target='ACCEPT'",
        "uci commit firewall",
    ] {
        assert!(fw.contains(want), "firewall uci-defaults lacks {want}");
    }
    assert!(!fw.contains("src='wan'"));
}

/// The first-run password of the OpenWrt package: made once, private, never over an admin.
#[test]
fn the_first_run_password_is_made_once_and_never_over_an_admin() {
    let script = openwrt_dir().join("package/etc/uci-defaults/91-spind-admin");
    let root = scratch("first-run");
    let sh = sh();
    let run = || cmd!(sh, "sh {script}").env("IPKG_INSTROOT", &root).succeeds().unwrap();
    assert!(run());
    let file = root.join("etc/spin/first-run-password");
    let pw = std::fs::read_to_string(&file).unwrap();
    assert_eq!(pw.trim_end().len(), 12, "{pw:?}");
    assert!(pw.trim_end().bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(run());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), pw, "kept at the next run");
    // With an admin password (or after setup), no first-run password is made.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(root.join("etc/spin/spinweb.passwd"), "admin:$6$x$y\n").unwrap();
    assert!(run());
    assert!(!file.exists());
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn overlay_contents() {
    let s = scratch("overlay");
    let files = s.join("files");
    build_overlay(&files).unwrap();
    let script = files.join("etc/uci-defaults/95-valibox");
    let mode = std::fs::metadata(&script).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("hostname='valibox'") && text.contains("dnssec='1'"));
    // Only first-boot scripts: the package brings everything else.
    let sh = sh();
    sh.change_dir(&files);
    let listing = cmd!(sh, "find . -type f").read().unwrap();
    assert_eq!(listing.trim(), "./etc/uci-defaults/95-valibox");
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn spind_conf_like_the_init_script() {
    let uci = "config spind 'spind'\n\toption enabled '1'\n\toption log_loglevel '7' # debug\n\toption pubsub_channel_traffic \"SPIN/traffic\"\n\nconfig other 'x'\n\toption spinweb_port '1'\n";
    assert_eq!(
        spind_conf_from_uci(uci, "192.168.8.1"),
        "log_loglevel = 7\npubsub_channel_traffic = SPIN/traffic\nspinweb_interfaces = 127.0.0.1,192.168.8.1\npubsub_host = 192.168.8.1\n"
    );
    let set = "config spind 'spind'\n\toption spinweb_interfaces '10.0.0.1'\n\toption pubsub_host '127.0.0.1'\n";
    assert_eq!(spind_conf_from_uci(set, "192.168.1.1"), "spinweb_interfaces = 10.0.0.1\npubsub_host = 127.0.0.1\n");
}

/// A fake ImageBuilder: its Makefile records the variables it was called with and writes a
/// placeholder "sysupgrade" file. This checks our invocation only; no real image is built.
fn fake_imagebuilder(dir: &Path, config: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "image:\n\
         \t@printf '%s\\n' 'PROFILE=$(PROFILE)' 'PACKAGES=$(PACKAGES)' 'FILES=$(FILES)' 'BIN_DIR=$(BIN_DIR)' 'EXTRA_IMAGE_NAME=$(EXTRA_IMAGE_NAME)' > $(CURDIR)/invocation.txt\n\
         \t@mkdir -p $(BIN_DIR)\n\
         \t@echo fake > $(BIN_DIR)/openwrt-24.10.7-$(EXTRA_IMAGE_NAME)-t-s-$(PROFILE)-squashfs-sysupgrade.bin\n\
         \t@echo fake > $(BIN_DIR)/openwrt-24.10.7-$(EXTRA_IMAGE_NAME)-t-s-$(PROFILE).manifest\n",
    )
    .unwrap();
    if let Some(c) = config {
        std::fs::write(dir.join(".config"), c).unwrap();
    }
}

#[test]
fn imagebuilder_invocation_with_a_fake_imagebuilder() {
    if !runner::host::have("make") {
        eprintln!("SKIPPED: no make on this host");
        return;
    }
    let board = OpenWrtBoard::load("glinet-mt3000").unwrap();
    let s = scratch("ib");
    let ib = s.join("ib");
    fake_imagebuilder(&ib, Some("CONFIG_TARGET_mediatek=y\nCONFIG_TARGET_mediatek_filogic=y\n"));
    let ipk = s.join("spind_0.1.0-1_aarch64_cortex-a53.ipk");
    std::fs::write(&ipk, "ipk").unwrap();
    let files = s.join("files");
    std::fs::create_dir_all(files.join("etc")).unwrap();
    let bin = s.join("bin");

    let sh = sh();
    let (program, args) = imagebuilder_command(&sh, &board, &ib, &ipk, &files, &bin).into_argv();
    assert_eq!(program, "make");
    assert_eq!(
        args,
        [
            "-C".to_string(),
            ib.display().to_string(),
            "image".into(),
            "PROFILE=glinet_gl-mt3000".into(),
            format!("PACKAGES=luci -dnsmasq dnsmasq-full {}", ipk.display()),
            format!("FILES={}", files.display()),
            format!("BIN_DIR={}", bin.display()),
            "EXTRA_IMAGE_NAME=valibox".into(),
        ]
    );

    let opts = Options { imagebuilder: Some(ib.clone()), ..Default::default() };
    let dir = resolve_imagebuilder(&board, &opts).unwrap().unwrap();
    let images = run_imagebuilder(&board, &dir, &ipk, &files, &bin, false).unwrap();
    let recorded = std::fs::read_to_string(ib.join("invocation.txt")).unwrap();
    assert_eq!(
        recorded,
        format!(
            "PROFILE=glinet_gl-mt3000\nPACKAGES=luci -dnsmasq dnsmasq-full {}\nFILES={}\nBIN_DIR={}\nEXTRA_IMAGE_NAME=valibox\n",
            ipk.display(),
            files.display(),
            bin.display()
        )
    );
    assert_eq!(images.len(), 2);
    let sysupgrade = images.iter().find(|a| a.what.contains("sysupgrade")).expect("a sysupgrade image");
    assert!(
        sysupgrade.path.to_string_lossy().ends_with("valibox-t-s-glinet_gl-mt3000-squashfs-sysupgrade.bin"),
        "{images:?}"
    );

    // Unchanged inputs: make is not run again.
    std::fs::remove_file(ib.join("invocation.txt")).unwrap();
    run_imagebuilder(&board, &dir, &ipk, &files, &bin, false).unwrap();
    assert!(!ib.join("invocation.txt").exists());
    // Unless the root file system is to be refreshed (--refresh-rootfs): make runs again.
    run_imagebuilder(&board, &dir, &ipk, &files, &bin, true).unwrap();
    assert!(ib.join("invocation.txt").exists());
    std::fs::remove_file(ib.join("invocation.txt")).unwrap();
    // A changed overlay runs it again.
    std::fs::write(files.join("etc/new"), "x").unwrap();
    run_imagebuilder(&board, &dir, &ipk, &files, &bin, false).unwrap();
    assert!(ib.join("invocation.txt").exists());

    // An ImageBuilder for another target is refused.
    let other = s.join("ib-ath79");
    fake_imagebuilder(&other, Some("CONFIG_TARGET_ath79=y\nCONFIG_TARGET_ath79_generic=y\n"));
    let err = resolve_imagebuilder(&board, &Options { imagebuilder: Some(other), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("not for mediatek/filogic"), "{err}");
    // A directory that is no ImageBuilder is refused.
    let err = resolve_imagebuilder(&board, &Options { imagebuilder: Some(files.clone()), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Makefile"), "{err}");
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn a_tarball_with_the_pinned_name_must_match_the_pinned_sha256() {
    let board = OpenWrtBoard::load("glinet-ar150").unwrap();
    let s = scratch("sha");
    let fake = s.join(board.imagebuilder_file());
    std::fs::write(&fake, "not the real ImageBuilder").unwrap();
    let err = resolve_imagebuilder(&board, &Options { imagebuilder: Some(fake), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match the pinned 5cf5b6e2"), "{err}");
    std::fs::remove_dir_all(&s).ok();
}

#[test]
fn no_download_without_a_pinned_sha256() {
    let mut board = OpenWrtBoard::load("glinet-ar150").unwrap();
    board.openwrt.imagebuilder_sha256 = None;
    board.openwrt.imagebuilder_url = board.openwrt.imagebuilder_url.replace("24.10.7", "0.0.0-test");
    let why = resolve_imagebuilder(&board, &Options::default()).unwrap().unwrap_err();
    assert!(why.contains("pins no verified sha256"), "{why}");
    let offline = resolve_imagebuilder(&board, &Options { offline: true, ..Default::default() }).unwrap().unwrap_err();
    assert!(offline.contains("--offline"), "{offline}");
}

#[test]
fn missing_imagebuilder_message() {
    let board = OpenWrtBoard::load("glinet-mt6000").unwrap();
    let m = missing_message(&board, "--offline, and none given with --imagebuilder");
    for want in [
        "glinet-mt6000: built spind, the .ipk and the FILES overlay, but NOT the sysupgrade image",
        "https://downloads.openwrt.org/releases/24.10.7/targets/mediatek/filogic/openwrt-imagebuilder-24.10.7-mediatek-filogic.Linux-x86_64.tar.zst",
        "echo '86ba337d85f40f063824efc7f6cb3dc609e5711e75f40492eeac0bf6b2ca0e2d  openwrt-imagebuilder-24.10.7-mediatek-filogic.Linux-x86_64.tar.zst' | sha256sum -c",
        "cargo xtask image --board glinet-mt6000 --imagebuilder /path/to/openwrt-imagebuilder-24.10.7-mediatek-filogic.Linux-x86_64.tar.zst",
        "opkg install",
    ] {
        assert!(m.contains(want), "{m}\nlacks {want}");
    }
}

/// Runs the init script's `start_service` with stand-ins for the parts of OpenWrt's
/// `/lib/functions.sh`, `/lib/functions/network.sh` and procd it uses (a UCI file is valid shell
/// once `config` and `option` are functions, which is how OpenWrt's own `config_load` reads it),
/// and checks it writes what `spind_conf_from_uci` (the file `spind -C` is checked with under
/// qemu) says and starts spind with it.
#[test]
fn init_script_writes_the_spind_conf() {
    let s = scratch("initconf");
    let shim = s.join("network.sh");
    std::fs::write(&shim, "network_get_ipaddr() { eval \"$1=192.168.8.1\"; }\n").unwrap();
    let init = std::fs::read_to_string(openwrt_dir().join("package/etc/init.d/spind")).unwrap();
    let conf = s.join("var/etc/spind.conf");
    let acct = s.join("nf_conntrack_acct");
    std::fs::write(&acct, "0\n").unwrap();
    let params = s.join("procd-params");
    let init = init
        .replace("/lib/functions/network.sh", &shim.display().to_string())
        .replace("CONF=/var/etc/spind.conf", &format!("CONF={}", conf.display()))
        .replace("/proc/sys/net/netfilter/nf_conntrack_acct", &acct.display().to_string());
    std::fs::write(s.join("spind.init"), init).unwrap();
    let uci_file = openwrt_dir().join("package/etc/config/spin");
    let harness = format!(
        r#"set -e
config() {{ CONFIG_SECTION="$2"; config_cb "$1" "$2"; }}
option() {{ n="$1"; shift; eval "CONFIG_${{CONFIG_SECTION}}_$n=\$*"; option_cb "$n" "$*"; }}
list() {{ :; }}
config_load() {{ . "{uci}"; }}
config_get() {{ eval "$1=\${{CONFIG_$2_$3:-$4}}"; }}
config_get_bool() {{ eval "$1=\${{CONFIG_$2_$3:-$4}}"; }}
procd_open_instance() {{ :; }}
procd_close_instance() {{ :; }}
procd_set_param() {{ echo "$*" >> "{params}"; }}
uci() {{ return 1; }}
. "{init}"
start_service
"#,
        uci = uci_file.display(),
        init = s.join("spind.init").display(),
        params = params.display()
    );
    let sh = sh();
    let out = cmd!(sh, "sh -c {harness}").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    let written = std::fs::read_to_string(&conf).unwrap();
    let uci = std::fs::read_to_string(&uci_file).unwrap();
    assert_eq!(written, spind_conf_from_uci(&uci, "192.168.8.1"));
    assert!(written.contains("spinweb_interfaces = 127.0.0.1,192.168.8.1\n"), "{written}");
    assert!(written.contains("state_dir = /etc/spin\n") && !written.contains("enabled"), "{written}");
    // Conntrack accounting on; procd runs spind with that file and respawns it.
    assert_eq!(std::fs::read_to_string(&acct).unwrap(), "1\n");
    let params = std::fs::read_to_string(&params).unwrap();
    assert!(params.starts_with(&format!("command /usr/sbin/spind -c {}\n", conf.display())), "{params}");
    assert!(params.contains("respawn 3600 5 5\n") && params.contains("file /etc/config/spin\n"), "{params}");
    std::fs::remove_dir_all(&s).ok();
}
