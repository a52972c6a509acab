//! The host tools: which programs each part of the project runs, the Debian package of each (the
//! ONE package list of the project: `cargo xtask setup` installs it, `scripts/setup-host.sh` only
//! calls that), checks that they are there, installing them as root on Debian 12 (with
//! bookworm-backports for e2fsprogs >= 1.47.1 and QEMU 10), binfmt_misc for foreign root file
//! systems, and the small file facts every report prints (sha256, sizes).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{cmd, Error, Result, Shell};

/// Who needs a tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// spind's integration tests: namespaces, real traffic, real brokers, a real browser.
    SpindTests,
    /// Debian images (`cargo xtask image --board x86_64|rpi3`).
    Image,
    /// Debian images of another architecture than the host's (rpi3 on x86_64).
    ImageForeign,
    /// OpenWrt packages: spind checked under qemu-user, the `.ipk`, the zig venv.
    OpenWrt,
    /// Running an OpenWrt ImageBuilder (or downloading it).
    ImageBuilder,
    /// `cargo xtask qemu-test` for both boards (UEFI included).
    QemuTest,
    QemuTestX86,
    QemuTestUefi,
    QemuTestArm,
}

/// How to tell a tool is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A program on the PATH (or in /usr/sbin, /sbin).
    Program(&'static str),
    /// A file at this absolute path.
    File(&'static str),
    /// Only the package itself (a library, a Python module): `dpkg-query`.
    Package,
}

/// A host tool: how to find it, the Debian package, whether that must come from backports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    pub probe: Probe,
    pub package: &'static str,
    pub backports: bool,
    pub needs: &'static [Need],
}

impl Tool {
    /// The program or file name as messages show it.
    pub fn name(&self) -> &'static str {
        match self.probe {
            Probe::Program(p) | Probe::File(p) => p,
            Probe::Package => self.package,
        }
    }
    pub fn present(&self) -> bool {
        match self.probe {
            Probe::Program(p) => have(p),
            Probe::File(f) => Path::new(f).is_file(),
            Probe::Package => package_installed(self.package),
        }
    }
}

const fn prog(program: &'static str, package: &'static str, needs: &'static [Need]) -> Tool {
    Tool { probe: Probe::Program(program), package, backports: false, needs }
}
const fn backport(program: &'static str, package: &'static str, needs: &'static [Need]) -> Tool {
    Tool { probe: Probe::Program(program), package, backports: true, needs }
}

use Need::*;

/// OVMF, the UEFI firmware the x86_64 image is booted with (its variable store OVMF_VARS_4M.fd
/// comes from the same package).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

/// Every host tool of the project.
pub const TOOLS: &[Tool] = &[
    // spind's namespace topologies, real traffic, brokers, browser and TLS tests.
    prog("ip", "iproute2", &[SpindTests, QemuTest, QemuTestX86, QemuTestArm]),
    prog("ping", "iputils-ping", &[SpindTests]),
    prog("nft", "nftables", &[SpindTests]),
    prog("conntrack", "conntrack", &[SpindTests]),
    // The name-rule tests queue DNS with iptables' NFQUEUE target where the kernel lacks nft_queue.
    prog("iptables", "iptables", &[SpindTests]),
    prog("dnsmasq", "dnsmasq-base", &[SpindTests, QemuTest, QemuTestX86, QemuTestArm]),
    prog("dig", "dnsutils", &[SpindTests, QemuTest, QemuTestX86, QemuTestArm]),
    prog("curl", "curl", &[SpindTests, QemuTest, QemuTestX86, QemuTestArm, ImageBuilder]),
    prog("tcpdump", "tcpdump", &[SpindTests]),
    // The IEEE OUI registry: the vendor file of the images and of the device-identity tests.
    Tool {
        probe: Probe::File("/usr/share/ieee-data/oui.txt"),
        package: "ieee-data",
        backports: false,
        needs: &[SpindTests, Image, OpenWrt],
    },
    // sysctl and kill: namespace settings and stopping spind in the tests.
    prog("sysctl", "procps", &[SpindTests, QemuTest, QemuTestX86, QemuTestArm]),
    prog("chromium", "chromium", &[SpindTests]),
    prog("chromedriver", "chromium-driver", &[SpindTests]),
    prog("openssl", "openssl", &[SpindTests]),
    prog("mosquitto_sub", "mosquitto-clients", &[SpindTests, QemuTest, QemuTestX86, QemuTestArm]),
    prog("mosquitto", "mosquitto", &[SpindTests]),
    prog("python3", "python3", &[SpindTests, OpenWrt, QemuTest, QemuTestX86, QemuTestArm]),
    // The MQTT client tests (spind/tests/it/mqtt_clients.rs): pip for the pinned paho-mqtt,
    // node and npm for the pinned MQTT.js (Node-RED's client), see [`ensure_test_clients`].
    prog("pip3", "python3-pip", &[SpindTests]),
    prog("node", "nodejs", &[SpindTests]),
    prog("npm", "npm", &[SpindTests]),
    // Debian images: root file systems and disks without mounts or loop devices.
    prog("mmdebstrap", "mmdebstrap", &[Image]),
    prog("sfdisk", "fdisk", &[Image]),
    prog("mkfs.fat", "dosfstools", &[Image]),
    // mtools also for the rpi3 QEMU test's settings file on the boot partition.
    prog("mcopy", "mtools", &[Image, QemuTestArm]),
    prog("tar", "tar", &[Image, OpenWrt]),
    prog("gzip", "gzip", &[OpenWrt]),
    prog("bsdtar", "libarchive-tools", &[Image]),
    prog("xz", "xz-utils", &[Image, ImageBuilder]),
    prog("qemu-img", "qemu-utils", &[Image, QemuTest, QemuTestX86, QemuTestArm]),
    // The rpi3 QEMU test writes the boot partition into its disk overlay.
    prog("qemu-io", "qemu-utils", &[QemuTest, QemuTestArm]),
    prog("sha1sum", "coreutils", &[Image]),
    // mkfs.ext4 -d rootfs.tar needs e2fsprogs >= 1.47.1 (bookworm has 1.47.0) and libarchive.
    backport("mkfs.ext4", "e2fsprogs", &[Image]),
    backport("debugfs", "e2fsprogs", &[Image]),
    Tool { probe: Probe::Package, package: "libarchive13", backports: false, needs: &[Image] },
    backport("qemu-aarch64-static", "qemu-user-static", &[ImageForeign, OpenWrt]),
    prog("arch-test", "arch-test", &[ImageForeign]),
    // C in spind's dependency tree (ring, psm) for aarch64 glibc/musl, on a non-arm64 host.
    prog("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", &[ImageForeign, QemuTestArm]),
    // OpenWrt: the MIPS binary under qemu-user, the pinned zig in a venv, the ImageBuilder.
    backport("qemu-mips-static", "qemu-user-static", &[OpenWrt]),
    Tool { probe: Probe::Package, package: "python3-venv", backports: false, needs: &[OpenWrt] },
    prog("zstd", "zstd", &[ImageBuilder]),
    prog("make", "make", &[ImageBuilder]),
    // QEMU tests: QEMU 10 system emulators, busybox's udhcpc as the LAN client, OVMF.
    prog("busybox", "busybox", &[QemuTest, QemuTestX86, QemuTestArm]),
    backport("qemu-system-x86_64", "qemu-system-x86", &[QemuTest, QemuTestX86]),
    Tool { probe: Probe::File(OVMF_CODE), package: "ovmf", backports: false, needs: &[QemuTest, QemuTestUefi] },
    backport("qemu-system-aarch64", "qemu-system-arm", &[QemuTest, QemuTestArm]),
];

/// The tools any of `needs` needs (each package once).
pub fn tools_for(needs: &[Need]) -> Vec<&'static Tool> {
    let mut v: Vec<&Tool> = Vec::new();
    for t in TOOLS {
        if t.needs.iter().any(|n| needs.contains(n)) && !v.iter().any(|o| o.probe == t.probe) {
            v.push(t);
        }
    }
    v
}

/// ` (Debian package P: apt-get install P)` for a program in [`TOOLS`], else a hint to PATH.
pub fn install_hint(program: &str) -> String {
    let name = Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or(program);
    match TOOLS.iter().find(|t| t.name() == name || t.name() == program) {
        Some(t) => format!(
            " (Debian package {0}: apt-get install{1} {0}, or `cargo xtask setup` as root)",
            t.package,
            if t.backports { " -t bookworm-backports" } else { "" }
        ),
        None => " (not on the PATH)".into(),
    }
}

/// A program on the PATH (or in /usr/sbin, /sbin, which a non-root PATH may lack).
pub fn have(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .any(|d| d.join(program).metadata().map(|m| m.is_file()).unwrap_or(false))
}

fn package_installed(package: &str) -> bool {
    let Ok(sh) = Shell::new() else { return false };
    let format = "${Status}";
    cmd!(sh, "dpkg-query -W -f={format} {package}").read().map(|s| s.contains("install ok installed")).unwrap_or(false)
}

/// The effective uid is 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Debian with apt (where missing tools can be installed).
pub fn is_debian() -> bool {
    Path::new("/etc/debian_version").exists() && have("apt-get")
}

/// `CI` is set to something else than "", "0" or "false".
pub fn in_ci() -> bool {
    ci_from(std::env::var("CI").ok().as_deref())
}

/// `CI` is on for any value but empty, `0` or `false`.
fn ci_from(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// e2fsprogs' version as (major, minor, patch), from `mke2fs -V`.
fn e2fs_version() -> Option<(u32, u32, u32)> {
    let sh = Shell::new().ok()?;
    let o = cmd!(sh, "mke2fs -V").output().ok()?;
    let text = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    let v = text.split_whitespace().nth(1)?;
    let mut it = v.split('.').map(|x| x.trim_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().unwrap_or(0));
    Some((it.next()?, it.next().unwrap_or(0), it.next().unwrap_or(0)))
}

/// What is missing: (what, package, from backports).
pub fn missing(needs: &[Need]) -> Vec<(String, &'static str, bool)> {
    let mut m: Vec<(String, &'static str, bool)> = Vec::new();
    for t in tools_for(needs) {
        // The cross gcc is only needed where the host is not arm64 itself.
        if t.package == "gcc-aarch64-linux-gnu" && std::env::consts::ARCH == "aarch64" {
            continue;
        }
        if !t.present() {
            m.push((format!("{} (package {})", t.name(), t.package), t.package, t.backports));
        }
    }
    if needs.contains(&Image) && have("mke2fs") {
        match e2fs_version() {
            Some(v) if v >= (1, 47, 1) => {}
            v => m.push((format!("e2fsprogs >= 1.47.1 for mkfs.ext4 -d TAR (have {v:?})"), "e2fsprogs", true)),
        }
    }
    m.dedup_by(|a, b| a.1 == b.1);
    m
}

/// Checks what `needs` need; as root on Debian installs what is missing, else the error names
/// each missing tool and the commands that install it.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let m = missing(needs);
    if m.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = m.iter().map(|x| x.0.clone()).collect();
    let regular: Vec<&str> = dedup(m.iter().filter(|x| !x.2).map(|x| x.1));
    let backports: Vec<&str> = dedup(m.iter().filter(|x| x.2).map(|x| x.1));
    if !(is_root() && is_debian()) {
        return Err(Error::Missing { missing: what, commands: install_commands(&regular, &backports) });
    }
    eprintln!("xtask: installing missing host tools: {}", what.join(", "));
    apt_install(&regular, &backports)?;
    let still = missing(needs);
    if !still.is_empty() {
        let still: Vec<String> = still.into_iter().map(|x| x.0).collect();
        return Err(Error::Other(format!("still missing after installing: {}", still.join(", "))));
    }
    Ok(())
}

fn dedup<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    for p in it {
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

pub const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
const BACKPORTS_TEXT: &str = "\
# Added by cargo xtask (spin): e2fsprogs >= 1.47.1 and QEMU 10 for image builds and tests.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

fn backports_configured() -> bool {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.iter().any(|t| t.lines().any(|l| !l.trim_start().starts_with('#') && l.contains("bookworm-backports")))
}

/// The commands that install `regular` and `backports` packages on Debian 12.
pub fn install_commands(regular: &[&str], backports: &[&str]) -> Vec<String> {
    let mut c = Vec::new();
    if !backports.is_empty() && !backports_configured() {
        c.push(format!("printf '{}' > {BACKPORTS_SOURCE}", BACKPORTS_TEXT.replace('\n', "\\n")));
    }
    c.push("apt-get update".into());
    if !regular.is_empty() {
        c.push(format!("apt-get install -y --no-install-recommends {}", regular.join(" ")));
    }
    if !backports.is_empty() {
        c.push(format!("apt-get install -y --no-install-recommends -t bookworm-backports {}", backports.join(" ")));
    }
    c
}

/// Installs Debian packages (root only); adds the backports source when it is needed.
pub fn apt_install(regular: &[&str], backports: &[&str]) -> Result<()> {
    if !backports.is_empty() && !backports_configured() {
        eprintln!("xtask: adding the bookworm-backports apt source ({BACKPORTS_SOURCE})");
        std::fs::write(BACKPORTS_SOURCE, BACKPORTS_TEXT).map_err(|source| Error::File {
            what: "cannot write",
            path: BACKPORTS_SOURCE.into(),
            source,
        })?;
    }
    let sh = Shell::new()?;
    sh.set_var("DEBIAN_FRONTEND", "noninteractive");
    cmd!(sh, "apt-get update -q").run()?;
    if !regular.is_empty() {
        cmd!(sh, "apt-get install -y -q --no-install-recommends {regular...}").run()?;
    }
    if !backports.is_empty() {
        cmd!(sh, "apt-get install -y -q --no-install-recommends -t bookworm-backports {backports...}").run()?;
    }
    Ok(())
}

/// Registers qemu-user for `arch` (`aarch64`) with binfmt_misc: this host's PID 1 is not
/// systemd, so nothing does it at boot. Idempotent.
pub fn ensure_binfmt(arch: &str) -> Result<()> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    if dir.join(format!("qemu-{arch}")).exists() {
        return Ok(());
    }
    if !is_root() {
        return Err(Error::Other(format!(
            "binfmt_misc has no qemu-{arch} entry: as root run\n  mount -t binfmt_misc binfmt_misc {0} 2>/dev/null; \
             cat /usr/lib/binfmt.d/qemu-{arch}.conf > {0}/register",
            dir.display()
        )));
    }
    if !dir.join("register").exists() {
        let sh = Shell::new()?;
        cmd!(sh, "mount -t binfmt_misc binfmt_misc {dir}").run()?;
    }
    let conf = format!("/usr/lib/binfmt.d/qemu-{arch}.conf");
    let rule = std::fs::read_to_string(&conf)
        .map_err(|e| Error::Other(format!("cannot read {conf} (package qemu-user-static): {e}")))?;
    std::fs::write(dir.join("register"), rule.trim_end())
        .map_err(|e| Error::Other(format!("cannot register {conf} with binfmt_misc: {e}")))?;
    eprintln!("xtask: registered qemu-{arch} with binfmt_misc");
    Ok(())
}

// ---- file facts -------------------------------------------------------------------------------

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file, in hex.
pub fn sha256_file(p: &Path) -> Result<String> {
    let open = |source| Error::File { what: "cannot read", path: p.to_path_buf(), source };
    let mut f = std::fs::File::open(p).map_err(open)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(open)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// A file's size in bytes (0 when it cannot be read).
pub fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A size as people read it: `512 B`, `3.2 KiB`, `100.4 MiB`.
pub fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Where the pinned MQTT test clients live (spind/tests/it/mqtt_clients.rs reads them there).
pub const TEST_CLIENTS_DIR: &str = "/opt/spin-test-clients";
/// paho-mqtt, installed with `pip --target {TEST_CLIENTS_DIR}/python`.
pub const PAHO_MQTT: &str = "paho-mqtt==2.1.0";
/// MQTT.js, installed with `npm --prefix {TEST_CLIENTS_DIR}/node`.
pub const MQTT_JS: &str = "mqtt@5.10.1";

/// Installs the pinned paho-mqtt and MQTT.js under [`TEST_CLIENTS_DIR`] unless the pinned
/// versions are there (root only; elsewhere an error naming the commands).
pub fn ensure_test_clients() -> Result<()> {
    let dir = Path::new(TEST_CLIENTS_DIR);
    let paho_version = PAHO_MQTT.split("==").nth(1).unwrap_or_default();
    let paho_ok =
        std::fs::read_to_string(dir.join(format!("python/paho_mqtt-{paho_version}.dist-info/METADATA"))).is_ok();
    let js_version = MQTT_JS.split('@').nth(1).unwrap_or_default();
    let js_ok = std::fs::read_to_string(dir.join("node/node_modules/mqtt/package.json"))
        .map(|t| t.contains(&format!("\"version\": \"{js_version}\"")))
        .unwrap_or(false);
    if paho_ok && js_ok {
        return Ok(());
    }
    let python = format!("{TEST_CLIENTS_DIR}/python");
    let node = format!("{TEST_CLIENTS_DIR}/node");
    if !is_root() {
        return Err(Error::Missing {
            missing: vec![format!("{PAHO_MQTT} and {MQTT_JS} under {TEST_CLIENTS_DIR}")],
            commands: vec![
                format!("python3 -m pip install --target {python} {PAHO_MQTT}"),
                format!("npm install --no-audit --no-fund --prefix {node} {MQTT_JS}"),
            ],
        });
    }
    let sh = Shell::new()?;
    if !paho_ok {
        eprintln!("xtask: installing {PAHO_MQTT} into {python}");
        cmd!(sh, "python3 -m pip install -q --upgrade --target {python} {PAHO_MQTT}").run()?;
    }
    if !js_ok {
        eprintln!("xtask: installing {MQTT_JS} into {node}");
        std::fs::create_dir_all(&node).map_err(|source| Error::File {
            what: "cannot create",
            path: node.clone().into(),
            source,
        })?;
        cmd!(sh, "npm install --no-audit --no-fund --prefix {node} {MQTT_JS}").run()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_on_for_any_value_but_empty_zero_or_false() {
        assert!(!ci_from(None));
        assert!(!ci_from(Some("")));
        assert!(!ci_from(Some("0")));
        assert!(!ci_from(Some("false")));
        assert!(ci_from(Some("true")));
        assert!(ci_from(Some("1")));
    }

    #[test]
    fn install_commands_use_backports_for_backports_packages() {
        let c = install_commands(&["mtools"], &["e2fsprogs"]);
        assert!(c.iter().any(|l| l == "apt-get install -y --no-install-recommends mtools"));
        assert!(c.iter().any(|l| l == "apt-get install -y --no-install-recommends -t bookworm-backports e2fsprogs"));
    }

    #[test]
    fn a_missing_program_is_named_with_its_package() {
        let sh = Shell::new().unwrap();
        let e = cmd!(sh, "xtask-no-such-program --version").read().unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("xtask-no-such-program is not installed (not on the PATH)"), "{e}");
        assert!(install_hint("mkfs.ext4").contains("Debian package e2fsprogs: apt-get install -t bookworm-backports"));
        assert!(install_hint("/usr/bin/mcopy").contains("package mtools"));
    }

    #[test]
    fn a_failed_command_names_itself_its_status_and_its_stderr() {
        let sh = Shell::new().unwrap();
        let script = "echo oops >&2; exit 3";
        let e = cmd!(sh, "sh -c {script}").read().unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("`sh -c \"echo oops >&2; exit 3\"` failed (exit status: 3): oops"), "{shown}");
    }

    #[test]
    fn a_logged_command_names_its_log() {
        let dir = std::env::temp_dir().join(format!("runner-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("step.log");
        let sh = Shell::new().unwrap();
        cmd!(sh, "sh -c 'echo one; echo two >&2'").run_logged("step", &log).unwrap();
        let e = cmd!(sh, "sh -c 'echo three; exit 4'").run_logged("step", &log).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("failed (exit status: 4); log "), "{shown}");
        assert!(shown.contains(&log.display().to_string()) && shown.ends_with("three"), "{shown}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("one\ntwo\n") && text.contains("$ sh -c \"echo three; exit 4\""), "{text}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tool_lists_hold_each_probe_once() {
        let all = tools_for(&[SpindTests, Image, ImageForeign, OpenWrt, ImageBuilder, QemuTest]);
        for t in &all {
            assert_eq!(all.iter().filter(|o| o.probe == t.probe).count(), 1, "{t:?}");
        }
        assert!(all.iter().any(|t| t.package == "ovmf"));
        assert!(human(3 << 20).ends_with("MiB") && human(100) == "100 B");
    }
}
