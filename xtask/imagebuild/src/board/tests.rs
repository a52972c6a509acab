//! The board format's tests: every shipped board parses, and every broken one gives an error
//! naming the file, the field and what is allowed.

use std::path::Path;

use super::*;

use super::debian_for_tests as debian;

fn openwrt(name: &str) -> OpenWrtBoard {
    match load(name).unwrap() {
        Board::OpenWrt(b) => b,
        Board::Debian(_) => panic!("{name} is not an OpenWrt board"),
    }
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(dir().join(format!("{name}.toml"))).unwrap()
}

fn parse_named(name: &str, text: &str) -> Result<Board, BoardError> {
    parse(Path::new(&format!("board-configs/{name}.toml")), text)
}

/// The shipped x86_64 board with one line replaced (the line must exist).
fn x86_with(old: &str, new: &str) -> Result<Board, BoardError> {
    let text = shipped("x86_64");
    assert!(text.contains(old), "x86_64.toml has no {old:?}");
    parse_named("x86_64", &text.replacen(old, new, 1))
}

#[test]
fn every_shipped_board_parses() {
    let names = names();
    for name in ["x86_64", "rpi3", "glinet-mt3000", "glinet-mt6000", "glinet-ar150"] {
        assert!(names.contains(&name.to_string()), "{name} not in {names:?}");
    }
    for name in &names {
        let b = parse_named(name, &shipped(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.name(), name);
    }
}

#[test]
fn shipped_debian_boards() {
    for name in ["x86_64", "rpi3"] {
        let b = parse_named(name, &shipped(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.name(), name);
        assert_eq!(b.base(), Base::Debian);
        assert!(matches!(b, Board::Debian(_)));
    }
    let x = debian("x86_64");
    assert_eq!(x.rust_target, "x86_64-unknown-linux-gnu");
    assert_eq!(x.disk.table, Table::Gpt);
    assert_eq!(x.root_part().label, "SPINROOT");
    assert!(x.console_args().ends_with("console=ttyS0,115200"));
    let r = debian("rpi3");
    assert_eq!(r.rust_target, "aarch64-unknown-linux-musl");
    assert_eq!(r.disk.table, Table::Mbr);
    assert_eq!(r.boot_part().label, "RASPIFIRM");
    assert_eq!(r.root_part().label, "RASPIROOT");
    assert!(r.is_foreign());
}

#[test]
fn shipped_openwrt_boards() {
    for name in ["glinet-mt3000", "glinet-mt6000", "glinet-ar150"] {
        let b = load(name).unwrap();
        assert_eq!(b.base(), Base::OpenWrt);
        // No [kernel], [debian] or [disk]: an OpenWrt board has none to hold.
        let Board::OpenWrt(b) = b else { panic!("{name} is not an OpenWrt board") };
        assert_eq!(b.release, "24.10.7");
        let o = &b.openwrt;
        assert_eq!(o.profile, format!("glinet_gl-{}", name.trim_start_matches("glinet-")));
        assert_eq!(o.imagebuilder_sha256.as_deref().map(str::len), Some(64), "{name}: pinned sha256");
        assert!(o.packages.contains(&"luci".to_string()));
    }
    let ar150 = openwrt("glinet-ar150");
    assert_eq!((ar150.arch.as_str(), ar150.rust_target.as_str()), ("mips", "mips-unknown-linux-musl"));
    assert_eq!(ar150.openwrt.package_arch, "mips_24kc");
    let mt6000 = openwrt("glinet-mt6000");
    assert_eq!(mt6000.network.wan, "eth1");
    assert_eq!(mt6000.network.lan.len(), 5);
}

/// The shipped AR150 board with one piece of text replaced (which must exist).
fn ar150_with(old: &str, new: &str) -> Result<Board, BoardError> {
    let text = shipped("glinet-ar150");
    assert!(text.contains(old), "glinet-ar150.toml has no {old:?}");
    parse_named("glinet-ar150", &text.replacen(old, new, 1))
}

/// Each broken OpenWrt board gives an error naming the file, the field and what is allowed.
#[test]
fn openwrt_errors_name_the_field_and_what_is_allowed() {
    // (replace, with, field ("" for structural errors), the message contains)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("arch = \"mips\"", "arch = \"riscv\"", "arch", &["\"riscv\"", "allowed: aarch64, mips, mipsel"]),
        ("arch = \"mips\"", "arch = \"mips64\"", "arch", &["allowed: aarch64, mips, mipsel"]),
        (
            "rust_target = \"mips-unknown-linux-musl\"",
            "rust_target = \"mips-unknown-linux-gnu\"",
            "rust_target",
            &["allowed: mips-unknown-linux-musl"],
        ),
        (
            "package_arch = \"mips_24kc\"",
            "package_arch = \"aarch64_cortex-a53\"",
            "openwrt.package_arch",
            &["mips_...", "does not fit arch \"mips\""],
        ),
        ("profile = \"glinet_gl-ar150\"", "profile = \"gl ar150\"", "openwrt.profile", &["make info"]),
        ("target = \"ath79\"", "target = \"\"", "openwrt.target", &["allowed: an OpenWrt target"]),
        (
            "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
            "outputs = [\"ipk\", \"iso\"]",
            "outputs[1]",
            &["\"iso\"", "allowed: ipk, overlay, sysupgrade"],
        ),
        (
            "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
            "outputs = [\"overlay\", \"sysupgrade\"]",
            "outputs",
            &["must list \"ipk\""],
        ),
        (
            "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
            "outputs = [\"ipk\", \"ipk\"]",
            "outputs[1]",
            &["listed twice"],
        ),
        (
            "outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]",
            "outputs = [\"img.xz\"]",
            "outputs[0]",
            &["allowed: ipk, overlay, sysupgrade"],
        ),
        (
            "packages = [",
            "packages = [\"bad name\", ",
            "openwrt.packages[0]",
            &["\"bad name\"", "OpenWrt package name"],
        ),
        ("packages = [", "packages = [\"-\", ", "openwrt.packages[0]", &["OpenWrt package name"]),
        ("wan = \"eth0\"", "wan = \"a-very-long-interface-name\"", "network.wan", &["1-15"]),
        ("lan = [\"eth1\"]", "lan = [\"br-lan\"]", "network.lan[0]", &["list its ports"]),
        ("release = \"24.10.7\"", "release = \"bookworm\"", "release", &["not an OpenWrt release", "24.10.7"]),
        (
            "release = \"24.10.7\"",
            "release = \"24.10.6\"",
            "openwrt.imagebuilder_url",
            &["openwrt-imagebuilder-24.10.6-ath79-generic.Linux-x86_64.tar.zst"],
        ),
        ("target = \"ath79\"", "target = \"ramips\"", "openwrt.imagebuilder_url", &["ramips-generic"]),
        ("imagebuilder_url = \"https", "imagebuilder_url = \"http", "openwrt.imagebuilder_url", &["an https URL"]),
        (
            "imagebuilder_sha256 = \"5cf5",
            "imagebuilder_sha256 = \"XYZ5cf5",
            "openwrt.imagebuilder_sha256",
            &["64 lowercase hex digits"],
        ),
        (
            "imagebuilder_sha256 = \"5cf5b6e2",
            "imagebuilder_sha256 = \"5CF5B6E2",
            "openwrt.imagebuilder_sha256",
            &["64 lowercase hex digits"],
        ),
        // Tables that belong to the other base.
        (
            "[openwrt]",
            "[kernel]\nconsoles = [\"ttyS0\"]\n[openwrt]",
            "kernel",
            &["only allowed with base = \"debian\""],
        ),
        (
            "[openwrt]",
            "[disk]\ntable = \"gpt\"\nbootloader = \"x\"\npartitions = []\n[openwrt]",
            "disk",
            &["only allowed with base = \"debian\""],
        ),
        // Structural errors come from the TOML reader: they name the key and the line.
        (
            "description = ",
            "name = \"glinet-ar150\"\ndescription = ",
            "",
            &["unknown field `name`", "expected one of `description`"],
        ),
        ("[openwrt]", "[openwrt]\nkernel = \"6.6\"", "", &["unknown field `kernel`", "expected one of `target`"]),
        ("[openwrt]", "[openwrt]\nrelease = \"24.10.7\"", "", &["unknown field `release`"]),
        ("subtarget = \"generic\"\n", "", "", &["missing field `subtarget`"]),
        ("package_arch = \"mips_24kc\"\n", "", "", &["missing field `package_arch`"]),
        ("wan = \"eth0\"\n", "", "", &["missing field `wan`"]),
        ("release = \"24.10.7\"", "release = 24", "", &["invalid type: integer", "line 6"]),
        ("outputs = [\"ipk\", \"overlay\", \"sysupgrade\"]", "outputs = \"ipk\"", "", &["invalid type: string"]),
        ("arch = \"mips\"", "arch = \"mips", "", &["line 8"]),
    ];
    for (from, to, field, expect) in cases {
        let e = ar150_with(from, to).expect_err(to);
        assert_eq!(e.file, Path::new("board-configs/glinet-ar150.toml"));
        assert_eq!(e.field, *field, "for {to:?}: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with("board-configs/glinet-ar150.toml: "), "{shown}");
        for want in *expect {
            assert!(shown.contains(want), "for {to:?}: {shown:?} should contain {want:?}");
        }
    }
    // An empty sha256 is allowed (explicitly unverified): downloads are then refused.
    let b = ar150_with("imagebuilder_sha256 = \"5cf5b6e2", "imagebuilder_sha256 = \"\" # \"5cf5b6e2").unwrap();
    let Board::OpenWrt(b) = b else { panic!("not an OpenWrt board") };
    assert_eq!(b.openwrt.imagebuilder_sha256, None);
    // No [openwrt] table.
    let text = shipped("glinet-ar150");
    let cut = text.find("[openwrt]").unwrap();
    let e = parse_named("glinet-ar150", &text[..cut]).unwrap_err();
    assert_eq!(e.field, "openwrt");
    assert!(e.message.contains("needs an [openwrt] table"), "{e}");
    // .tar.xz ImageBuilders are allowed too.
    ar150_with(".Linux-x86_64.tar.zst", ".Linux-x86_64.tar.xz").unwrap();
}

#[test]
fn errors_name_the_file_the_field_and_what_is_allowed() {
    let e = x86_with("table = \"gpt\"", "table = \"apm\"").unwrap_err();
    assert_eq!(e.field, "disk.table");
    assert_eq!(
        e.to_string(),
        "board-configs/x86_64.toml: field `disk.table`: \"apm\" is not allowed; allowed: gpt, mbr"
    );
    let e = x86_with("base = \"debian\"", "base = \"yocto\"").unwrap_err();
    assert_eq!(e.field, "base");
    assert!(e.message.contains("allowed: debian, openwrt"));
    let e = x86_with("\"qcow2\"", "\"vdi\"").unwrap_err();
    assert_eq!(e.field, "outputs[1]");
    assert!(e.message.contains("allowed: img.xz, qcow2, ova"), "{e}");
    let e = x86_with("fs = \"ext4\"", "fs = \"btrfs\"").unwrap_err();
    assert_eq!(e.field, "disk.partitions[1].fs");
    assert!(e.message.contains("allowed: vfat, ext4"));
    let e = x86_with("label = \"SPINBOOT\"", "label = \"spin-boot-partition\"").unwrap_err();
    assert_eq!(e.field, "disk.partitions[0].label");
    let e = x86_with("size_mib = 128", "size_mib = 8").unwrap_err();
    assert_eq!(e.field, "disk.partitions[0].size_mib");
    assert!(e.message.contains("64..=65536"));
    let e = x86_with("rust_target = \"x86_64-unknown-linux-gnu\"", "rust_target = \"aarch64-unknown-linux-musl\"")
        .unwrap_err();
    assert_eq!(e.field, "rust_target");
    assert!(e.message.contains("x86_64-unknown-linux-gnu"), "{e}");
    let e = x86_with("wan = \"eth0\"", "wan = \"eth1\"").unwrap_err();
    assert_eq!(e.field, "network.lan[0]");
    assert!(e.message.contains("also the WAN"));
    let e = x86_with("wan = \"eth0\"", "wan = \"a very long name!\"").unwrap_err();
    assert_eq!(e.field, "network.wan");
    let e = x86_with("bootloader = \"syslinux+systemd-boot\"", "bootloader = \"raspi-firmware\"").unwrap_err();
    assert_eq!(e.field, "disk.table");
    assert!(e.message.contains("needs table = \"mbr\""));
    let e = x86_with("cmdline = \"", "cmdline = \"root=/dev/sda2 ").unwrap_err();
    assert_eq!(e.field, "kernel.cmdline");
    let e = x86_with("\"linux-image-amd64\",", "").unwrap_err();
    assert_eq!(e.field, "debian.packages");
    assert!(e.message.contains("linux-image-amd64"));
    let e = x86_with("\"nftables\"", "\"Not A Package\"").unwrap_err();
    assert!(e.field.starts_with("debian.packages["), "{e}");
}

#[test]
fn unknown_and_missing_keys_are_named() {
    let e = x86_with("[network]", "colour = \"red\"\n[network]").unwrap_err();
    assert_eq!(e.file, Path::new("board-configs/x86_64.toml"));
    assert!(e.message.contains("unknown field `colour`"), "{e}");
    assert!(e.message.contains("expected one of"), "{e}");
    let e = x86_with("rust_target = \"x86_64-unknown-linux-gnu\"\n", "").unwrap_err();
    assert!(e.message.contains("missing field `rust_target`"), "{e}");
    let e = x86_with("size_mib = 128", "size_mib = \"big\"").unwrap_err();
    assert!(e.message.contains("size_mib") || e.message.contains("line"), "{e}");
    assert!(e.message.contains("invalid type"), "{e}");
    let e = parse_named("bad name", &shipped("x86_64")).unwrap_err();
    assert!(e.message.contains("file name"), "{e}");
}

#[test]
fn debian_tables_are_required_for_debian_boards() {
    let text = shipped("x86_64");
    let cut = text.find("[kernel]").unwrap();
    let e = parse_named("x86_64", &text[..cut]).unwrap_err();
    assert_eq!(e.field, "kernel");
    assert!(e.message.contains("needs a [kernel] table"));
    let cut = text.find("[disk]").unwrap();
    let e = parse_named("x86_64", &text[..cut]).unwrap_err();
    assert_eq!(e.field, "disk");
    assert!(e.message.contains("needs a [disk] table"));
    let openwrt = &shipped("glinet-ar150")[shipped("glinet-ar150").find("[openwrt]").unwrap()..];
    let e = parse_named("x86_64", &format!("{text}\n{openwrt}")).unwrap_err();
    assert_eq!(e.field, "openwrt");
    assert!(e.message.contains("only allowed with base = \"openwrt\""), "{e}");
    // A Debian board keeps Debian's arch names and suites.
    let e = x86_with("arch = \"amd64\"", "arch = \"aarch64\"").unwrap_err();
    assert_eq!(e.field, "arch");
    assert!(e.message.contains("allowed: amd64, arm64"), "{e}");
    let e = x86_with("release = \"bookworm\"", "release = \"24.10.7\"").unwrap_err();
    assert_eq!(e.field, "release");
}

#[test]
fn unknown_board_lists_the_boards() {
    let e = load("no-such-board").unwrap_err().to_string();
    assert!(e.contains("x86_64") && e.contains("rpi3") && e.contains("glinet-ar150"), "{e}");
}

/// The shipped rpi3 board with one piece of text replaced (which must exist).
fn rpi3_with(old: &str, new: &str) -> Result<Board, BoardError> {
    let text = shipped("rpi3");
    assert!(text.contains(old), "rpi3.toml has no {old:?}");
    parse_named("rpi3", &text.replacen(old, new, 1))
}

#[test]
fn the_pi_has_wifi_and_a_board_without_the_table_has_none() {
    let r = debian("rpi3");
    let w = r.wifi.as_ref().expect("rpi3 has a [wifi] table");
    assert_eq!(w.interface, "wlan0");
    assert_eq!(w.firmware_package, "firmware-brcm80211");
    assert_eq!((w.band, w.channel, w.hw_mode()), (Band::G24, 6, "g"));
    assert_eq!(w.country, "NL");
    // hostapd and the firmware are installed with the table, once each.
    let p = r.packages();
    for pkg in ["hostapd", "wireless-regdb", "firmware-brcm80211", "linux-image-arm64"] {
        assert_eq!(p.iter().filter(|x| *x == pkg).count(), 1, "{pkg} in {p:?}");
    }
    // The firmware is non-free-firmware.
    assert!(r.debian.components.contains(&Component::NonFreeFirmware));
    let x = debian("x86_64");
    assert!(x.wifi.is_none());
    assert_eq!(x.packages(), x.debian.packages, "a board without [wifi] installs what it lists");
    assert!(!x.packages().contains(&"hostapd".to_string()));
    // The table may go: the board builds as one without WiFi.
    let text = shipped("rpi3");
    let (start, end) = (text.find("\n[wifi]\n").unwrap(), text.find("\n[kernel]\n").unwrap());
    let Board::Debian(b) = parse_named("rpi3", &format!("{}{}", &text[..start], &text[end..])).unwrap() else {
        panic!("rpi3 is a Debian board")
    };
    assert!(b.wifi.is_none());
    assert!(!b.packages().contains(&"hostapd".to_string()));
    // 5 GHz.
    let Board::Debian(b) = rpi3_with("band = \"2.4\"\nchannel = 6", "band = \"5\"\nchannel = 36").unwrap() else {
        panic!("rpi3 is a Debian board")
    };
    assert_eq!(b.wifi.unwrap().hw_mode(), "a");
}

#[test]
fn a_bad_wifi_table_names_the_field_and_what_is_allowed() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("band = \"2.4\"", "band = \"6\"", "wifi.band", &["\"6\"", "allowed: 2.4, 5"]),
        ("channel = 6", "channel = 14", "wifi.channel", &["14 is not a channel of the 2.4 GHz band", "1-13"]),
        ("band = \"2.4\"", "band = \"5\"", "wifi.channel", &["6 is not a channel of the 5 GHz band", "36-64"]),
        ("channel = 6", "channel = 0", "wifi.channel", &["allowed: 1-13"]),
        ("country = \"NL\"", "country = \"nl\"", "wifi.country", &["two-letter", "upper case"]),
        ("country = \"NL\"", "country = \"NLD\"", "wifi.country", &["ISO 3166-1"]),
        ("country = \"NL\"", "country = \"00\"", "wifi.country", &["such as NL"]),
        ("interface = \"wlan0\"", "interface = \"eth0\"", "wifi.interface", &["already the WAN"]),
        ("interface = \"wlan0\"", "interface = \"eth1\"", "wifi.interface", &["a LAN port"]),
        ("interface = \"wlan0\"", "interface = \"br-lan\"", "wifi.interface", &["the bridge"]),
        ("interface = \"wlan0\"", "interface = \"wlan 0\"", "wifi.interface", &["1-15 letters"]),
        (
            "firmware_package = \"firmware-brcm80211\"",
            "firmware_package = \"Firmware BRCM\"",
            "wifi.firmware_package",
            &["not a Debian package name"],
        ),
        // Structural errors: the TOML reader's, naming the key.
        ("channel = 6", "channel = \"six\"", "", &["invalid type: string"]),
        ("channel = 6", "channel = 6\nssid = \"home\"", "", &["unknown field `ssid`", "expected one of"]),
        ("country = \"NL\"\n", "", "", &["missing field `country`"]),
        ("channel = 6", "channel = 300", "", &["300"]),
    ];
    for (from, to, field, expect) in cases {
        let e = rpi3_with(from, to).expect_err(to);
        assert_eq!(e.file, Path::new("board-configs/rpi3.toml"));
        assert_eq!(e.field, *field, "for {to:?}: {e}");
        let shown = e.to_string();
        for want in *expect {
            assert!(shown.contains(want), "for {to:?}: {shown:?} should contain {want:?}");
        }
    }
    // No [wifi] on an OpenWrt board (its radios are OpenWrt's).
    let e = ar150_with("[openwrt]", "[wifi]\ninterface = \"wlan0\"\n[openwrt]").unwrap_err();
    assert!(e.message.contains("unknown field `wifi`"), "{e}");
}
