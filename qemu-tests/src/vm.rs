//! One QEMU virtual machine: its command line, its serial console (logged, searchable, and
//! writable for a root login) and its lifetime. x86_64 boots its disk through SeaBIOS
//! ([`Machine::PcBios`]) or through OVMF, Debian's UEFI firmware ([`Machine::PcUefi`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use runner::{cmd, Shell, Stdin, Stream};

/// `spin-BOARD.boot.txt` from the image builder.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub dir: PathBuf,
    pub board: String,
    pub cmdline: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub dtb: Option<PathBuf>,
    pub ready_marker: String,
    pub disk: PathBuf,
}

impl BootInfo {
    pub fn load(dir: &Path, board: &str) -> Result<BootInfo, String> {
        let path = dir.join(format!("spin-{board}.boot.txt"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let kv: BTreeMap<&str, &str> =
            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| kv.get(k).map(|v| v.to_string()).ok_or_else(|| format!("{}: no {k}=", path.display()));
        let disk = dir.join(format!("spin-{board}.img"));
        for f in [&disk] {
            if !f.exists() {
                return Err(format!("{} is missing", f.display()));
            }
        }
        Ok(BootInfo {
            dir: dir.to_path_buf(),
            board: board.to_string(),
            cmdline: get("CMDLINE")?,
            kernel: dir.join(get("KERNEL")?),
            initrd: dir.join(get("INITRD")?),
            dtb: kv.get("DTB").map(|d| dir.join(d)),
            ready_marker: get("READY_MARKER").unwrap_or_else(|_| "SPIN-ROUTER-READY".into()),
            disk,
        })
    }
}

/// How the image is started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Machine {
    /// x86_64 PC from its own disk (SeaBIOS + syslinux): the image exactly as shipped.
    PcBios,
    /// x86_64 `-M q35` PC from its own disk under UEFI (OVMF as pflash: [`OVMF_CODE`]
    /// read-only, a writable copy of [`OVMF_VARS`] in [`VmSpec::efi_vars`]), which starts
    /// systemd-boot (`\EFI\BOOT\BOOTX64.EFI`): the image exactly as shipped.
    PcUefi,
    /// arm64 `-M virt -cpu cortex-a53` with the image's kernel and initrd and its root file
    /// system on a virtio disk.
    ArmVirt,
    /// `-M raspi3b` with the SD image (kernel/initrd/DTB given to QEMU; it cannot run the Pi's
    /// firmware). No network devices.
    Raspi3b,
}

/// OVMF's firmware code (Debian package `ovmf`), read-only.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's empty variable store (same package), copied per run: the firmware writes to it.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

pub struct Nic {
    pub fd: OwnedFd,
    pub mac: String,
}

pub struct VmSpec<'a> {
    pub machine: Machine,
    pub boot: &'a BootInfo,
    /// The qcow2 overlay the VM writes to.
    pub disk: PathBuf,
    /// WAN first, then LAN.
    pub nics: Vec<Nic>,
    pub accel: &'a str,
    /// [`Machine::PcUefi`]: the VM's own copy of the UEFI variable store ([`efi_vars`]).
    pub efi_vars: Option<PathBuf>,
    pub serial_log: PathBuf,
    pub stderr_log: PathBuf,
}

/// Writes a throw-away qcow2 overlay over the raw image (`size`: grow the virtual disk).
pub fn overlay(base: &Path, overlay: &Path, size: Option<&str>) -> Result<(), String> {
    let _ = std::fs::remove_file(overlay);
    let sh = runner::shell()?;
    cmd!(sh, "qemu-img create -q -f qcow2 -b {base} -F raw {overlay} {size...}").read()?;
    Ok(())
}

/// Writes a fresh copy of OVMF's empty variable store for one VM ([`VmSpec::efi_vars`]).
pub fn efi_vars(copy: &Path) -> Result<(), String> {
    std::fs::copy(OVMF_VARS, copy)
        .map(|_| ())
        .map_err(|e| format!("copying {OVMF_VARS} to {}: {e} (package ovmf)", copy.display()))
}

pub fn qemu_command<'a>(sh: &'a Shell, spec: &VmSpec) -> runner::Cmd<'a> {
    let b = spec.boot;
    let disk = spec.disk.to_string_lossy().into_owned();
    let mut args: Vec<String> = Vec::new();
    let mut a = |s: &[&str]| args.extend(s.iter().map(|x| x.to_string()));
    let drive = format!("file={disk},format=qcow2,if=none,id=disk0,cache=unsafe");
    // x86_64 boots from the disk itself, whatever the firmware.
    let pc_disk = ["-drive", &drive, "-device", "virtio-blk-pci,drive=disk0,bootindex=0"];
    let program = match spec.machine {
        Machine::PcBios => {
            a(&["-machine", "pc", "-m", "1024", "-smp", "2"]);
            a(&pc_disk);
            "qemu-system-x86_64"
        }
        Machine::PcUefi => {
            let vars = spec.efi_vars.as_deref().expect("Machine::PcUefi needs VmSpec::efi_vars");
            a(&["-machine", "q35", "-m", "1024", "-smp", "2"]);
            a(&[
                "-drive",
                &format!("if=pflash,unit=0,format=raw,readonly=on,file={OVMF_CODE}"),
                "-drive",
                &format!("if=pflash,unit=1,format=raw,file={}", vars.display()),
            ]);
            a(&pc_disk);
            "qemu-system-x86_64"
        }
        Machine::ArmVirt => {
            a(&["-machine", "virt", "-cpu", "cortex-a53", "-m", "1024", "-smp", "2"]);
            a(&["-kernel", &b.kernel.to_string_lossy(), "-initrd", &b.initrd.to_string_lossy()]);
            a(&["-append", &format!("{} console=ttyAMA0", b.cmdline)]);
            a(&["-drive", &drive]);
            a(&["-device", "virtio-blk-pci,drive=disk0"]);
            "qemu-system-aarch64"
        }
        Machine::Raspi3b => {
            a(&["-machine", "raspi3b"]);
            a(&["-kernel", &b.kernel.to_string_lossy(), "-initrd", &b.initrd.to_string_lossy()]);
            if let Some(dtb) = &b.dtb {
                a(&["-dtb", &dtb.to_string_lossy()]);
            }
            a(&["-append", &b.cmdline]);
            a(&["-drive", &format!("file={disk},format=qcow2,if=sd,cache=unsafe")]);
            "qemu-system-aarch64"
        }
    };
    a(&["-accel", spec.accel, "-nodefaults", "-display", "none", "-no-user-config"]);
    if spec.machine != Machine::Raspi3b {
        a(&["-device", "virtio-rng-pci"]);
        // Tests switch DNSSEC validation off: the simulated internet has no signed root.
        a(&["-fw_cfg", "name=opt/org.spin/dnssec,string=0"]);
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        let id = if i == 0 { "wan" } else { "lan" };
        a(&["-netdev", &format!("tap,id={id},fd={}", nic.fd.as_raw_fd())]);
        // Fixed PCI slots: the first NIC (WAN) probes first and becomes eth0.
        a(&["-device", &format!("virtio-net-pci,netdev={id},mac={},addr={:#x}", nic.mac, 0x10 + i)]);
    }
    a(&["-chardev", "stdio,id=console,signal=off"]);
    if spec.machine == Machine::Raspi3b {
        // The Pi's console (ttyS1, the mini UART) is QEMU's second serial port.
        a(&["-serial", "null"]);
    }
    a(&["-serial", "chardev:console", "-monitor", "none"]);
    cmd!(sh, "{program} {args...}")
}

/// The serial console: everything the VM printed (also in the log file), searched by waiters
/// from a cursor that each successful wait moves forward.
pub struct Serial {
    inner: Mutex<SerialText>,
    cv: Condvar,
}

struct SerialText {
    text: String,
    cursor: usize,
    closed: bool,
}

impl Serial {
    fn new() -> Arc<Serial> {
        Arc::new(Serial {
            inner: Mutex::new(SerialText { text: String::new(), cursor: 0, closed: false }),
            cv: Condvar::new(),
        })
    }

    fn push(&self, s: &str) {
        let mut g = self.inner.lock().unwrap();
        g.text.push_str(&s.replace('\r', ""));
        self.cv.notify_all();
    }

    fn close(&self) {
        self.inner.lock().unwrap().closed = true;
        self.cv.notify_all();
    }

    /// Waits for the first of `needles` after the cursor; returns its index and the text from
    /// the cursor to the end of the match, and moves the cursor past it.
    pub fn wait_any(&self, needles: &[&str], timeout: Duration, what: &str) -> Result<(usize, String), String> {
        let end = Instant::now() + timeout;
        let mut g = self.inner.lock().unwrap();
        loop {
            let hay = &g.text[g.cursor..];
            let hit = needles.iter().enumerate().filter_map(|(i, n)| hay.find(n).map(|p| (p, i, n.len()))).min();
            if let Some((pos, i, len)) = hit {
                let from = g.cursor;
                g.cursor += pos + len;
                let seen = g.text[from..g.cursor].to_string();
                return Ok((i, seen));
            }
            if g.closed {
                return Err(format!("QEMU exited while waiting for {what} ({:?} on the serial console)", needles[0]));
            }
            let now = Instant::now();
            if now >= end {
                return Err(format!(
                    "timed out after {} s waiting for {what} ({:?} on the serial console)",
                    timeout.as_secs(),
                    needles[0]
                ));
            }
            g = self.cv.wait_timeout(g, end - now).unwrap().0;
        }
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration, what: &str) -> Result<String, String> {
        self.wait_any(&[needle], timeout, what).map(|(_, s)| s)
    }

    /// The first line after the cursor containing `prefix` (without moving the cursor).
    pub fn find_line(&self, prefix: &str) -> Option<String> {
        let g = self.inner.lock().unwrap();
        g.text[..].lines().find(|l| l.contains(prefix)).map(|l| l.to_string())
    }

    pub fn mark(&self) -> usize {
        self.inner.lock().unwrap().text.len()
    }

    pub fn since(&self, mark: usize) -> String {
        self.inner.lock().unwrap().text[mark..].to_string()
    }
}

pub struct Vm {
    pub child: Child,
    pub serial: Arc<Serial>,
    stdin: ChildStdin,
    pub started: Instant,
    cmd_seq: u32,
    logged_in: bool,
}

impl Vm {
    pub fn start(spec: VmSpec) -> Result<Vm, String> {
        let sh = runner::shell()?;
        let fds: Vec<i32> = spec.nics.iter().map(|n| n.fd.as_raw_fd()).collect();
        // The tap descriptors are inherited by QEMU (and only by it). QEMU runs as long as the
        // test talks to its console: a child the runner spawns, not a command xshell runs.
        let c = qemu_command(&sh, &spec).keep_fds(&fds).stdin(Stdin::Piped);
        let stderr = File::create(&spec.stderr_log).map_err(|e| format!("{}: {e}", spec.stderr_log.display()))?;
        let shown = c.to_string();
        std::fs::write(spec.stderr_log.with_extension("cmdline"), format!("{shown}\n")).ok();
        let mut child = c.spawn(Stream::Piped, Stream::File(stderr)).map_err(|e| format!("cannot start QEMU: {e}"))?;
        drop(spec.nics);
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let serial = Serial::new();
        let mut log = File::create(&spec.serial_log).map_err(|e| format!("{}: {e}", spec.serial_log.display()))?;
        let s2 = serial.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = log.write_all(&buf[..n]);
                        let _ = log.flush();
                        s2.push(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            }
            s2.close();
        });
        Ok(Vm { child, serial, stdin, started: Instant::now(), cmd_seq: 0, logged_in: false })
    }

    pub fn write(&mut self, s: &str) -> Result<(), String> {
        self.stdin
            .write_all(s.as_bytes())
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("writing to the serial console: {e}"))
    }

    /// Waits for the ready marker (or the image's NOT-READY line, which fails at once).
    pub fn wait_ready(&self, marker: &str, timeout: Duration, what: &str) -> Result<Duration, String> {
        let t = Instant::now();
        let (i, _) = self.serial.wait_any(&[marker, "SPIN-ROUTER-NOT-READY"], timeout, what)?;
        if i == 1 {
            let line = self.serial.find_line("SPIN-ROUTER-NOT-READY").unwrap_or_default();
            return Err(format!("the router said: {line}"));
        }
        Ok(t.elapsed())
    }

    /// Logs in as root on the serial console (getty) with the first-boot password.
    pub fn login(&mut self, password: &str) -> Result<(), String> {
        if self.logged_in {
            return Ok(());
        }
        // Wake the getty up; it prints its prompt again.
        self.write("\n")?;
        self.serial.wait_for("login: ", Duration::from_secs(60), "the serial console's login prompt")?;
        self.write("root\n")?;
        self.serial.wait_for("assword: ", Duration::from_secs(30), "the password prompt")?;
        self.write(&format!("{password}\n"))?;
        // Type only once the shell prompts (login discards what is typed before).
        let (i, _) = self.serial.wait_any(
            &[":~# ", "Login incorrect"],
            Duration::from_secs(60),
            "the root shell's prompt on the serial console",
        )?;
        if i == 1 {
            return Err("root login on the serial console failed (Login incorrect)".into());
        }
        // Quiet shell: no echo, a plain prompt; `$((..))` so the typed text cannot match.
        let mut tries = 0;
        loop {
            self.write("stty -echo; PS1='# '; echo LOGGED-IN-$((40+2))\n")?;
            match self.serial.wait_for("LOGGED-IN-42", Duration::from_secs(10), "a root shell on the serial console") {
                Ok(_) => break,
                Err(e) if tries >= 5 => return Err(e),
                Err(_) => tries += 1,
            }
        }
        self.logged_in = true;
        Ok(())
    }

    /// Runs a shell command as root on the serial console; returns its output and exit status.
    pub fn shell(&mut self, command: &str, timeout: Duration) -> Result<(i32, String), String> {
        self.cmd_seq += 1;
        let n = self.cmd_seq;
        self.write(&format!("echo @@BEG\"\"IN{n}@@; {command}; echo @@E\"\"ND{n}:$?@@\n"))?;
        self.serial.wait_for(&format!("@@BEGIN{n}@@\n"), timeout, &format!("the start of `{command}`"))?;
        let out = self.serial.wait_for(&format!("@@END{n}:"), timeout, &format!("`{command}` to finish"))?;
        let rest = self.serial.wait_for("@@", Duration::from_secs(5), "the exit status")?;
        let status = rest.trim_end_matches("@@").trim().parse().unwrap_or(-1);
        Ok((status, out.trim_end_matches(&format!("@@END{n}:")).to_string()))
    }

    /// Reboots the guest cleanly (in place: QEMU resets, the disk overlay is kept).
    pub fn reboot(&mut self) -> Result<(), String> {
        self.write("sync; systemctl reboot\n")?;
        self.logged_in = false;
        Ok(())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which accelerator works here: KVM only if a guest actually runs on it (on some hosts
/// /dev/kvm exists but cannot run normal guests), else TCG. `SPIN_QEMU_ACCEL` overrides.
pub fn probe_accel(machine: Machine, boot: &BootInfo, log: &Path) -> String {
    if let Ok(a) = std::env::var("SPIN_QEMU_ACCEL") {
        return a;
    }
    if machine != Machine::PcBios || std::env::consts::ARCH != "x86_64" {
        return "tcg".into();
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return "tcg".into();
    }
    // Boot the image's kernel without a root file system: with KVM it panics within seconds
    // ("VFS: Unable to mount root fs") and -no-reboot ends QEMU.
    let Ok(sh) = Shell::new() else { return "tcg".into() };
    let kernel = &boot.kernel;
    let c = cmd!(sh, "qemu-system-x86_64 -accel kvm -machine pc -m 256 -nodefaults -display none -no-reboot -kernel {kernel} -append 'console=ttyS0 panic=-1 root=/dev/nonexistent' -serial stdio");
    let Ok(mut child) = c.spawn(Stream::Piped, Stream::Piped) else {
        return "tcg".into();
    };
    let t = Instant::now();
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(8) {
        if let Ok(Some(_)) = child.try_wait() {
            let mut out = String::new();
            if let Some(mut s) = child.stdout.take() {
                let _ = s.read_to_string(&mut out);
            }
            ok = out.contains("Kernel panic");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let verdict = if ok { "kvm" } else { "tcg" };
    let _ = std::fs::write(
        log,
        format!(
            "KVM probe: {} after {:.1} s -> {verdict}\n",
            if ok { "guest ran" } else { "no guest output" },
            t.elapsed().as_secs_f64()
        ),
    );
    verdict.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_description_and_qemu_command_lines() {
        let dir = std::env::temp_dir().join(format!("qemu-tests-vm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("spin-rpi3.boot.txt"),
            "# comment\nBOARD=rpi3\nCMDLINE=console=ttyS1,115200 root=LABEL=RASPIROOT rw\nREADY_MARKER=SPIN-ROUTER-READY\n\
             KERNEL=spin-rpi3.vmlinuz\nINITRD=spin-rpi3.initrd.img\nDTB=bcm2837-rpi-3-b.dtb\n",
        )
        .unwrap();
        assert!(BootInfo::load(&dir, "rpi3").unwrap_err().contains("missing"));
        std::fs::write(dir.join("spin-rpi3.img"), b"").unwrap();
        let b = BootInfo::load(&dir, "rpi3").unwrap();
        assert_eq!(b.dtb.as_deref(), Some(dir.join("bcm2837-rpi-3-b.dtb").as_path()));
        let spec = |machine| VmSpec {
            machine,
            boot: &b,
            disk: dir.join("o.qcow2"),
            nics: Vec::new(),
            accel: "tcg",
            efi_vars: (machine == Machine::PcUefi).then(|| dir.join("vars.fd")),
            serial_log: dir.join("s.log"),
            stderr_log: dir.join("e.log"),
        };
        let sh = Shell::new().unwrap();
        // The command line as sh::show printed it: program and arguments joined by spaces.
        let show = |c: runner::Cmd| {
            let (program, args) = c.into_argv();
            std::iter::once(program).chain(args).collect::<Vec<_>>().join(" ")
        };
        let virt = show(qemu_command(&sh, &spec(Machine::ArmVirt)));
        assert!(virt.starts_with("qemu-system-aarch64 -machine virt -cpu cortex-a53"));
        assert!(virt.contains("root=LABEL=RASPIROOT rw console=ttyAMA0"));
        assert!(virt.contains("virtio-rng-pci") && virt.contains("opt/org.spin/dnssec,string=0"));
        let pi = show(qemu_command(&sh, &spec(Machine::Raspi3b)));
        assert!(pi.contains("-dtb") && pi.contains("if=sd") && pi.contains("-serial null -serial chardev:console"));
        // UEFI: q35 with OVMF's code read-only and the run's own variable store, the disk
        // overlay on virtio-blk as under SeaBIOS, no -kernel (the firmware boots the disk).
        let d = dir.display();
        let uefi = show(qemu_command(&sh, &spec(Machine::PcUefi)));
        assert!(uefi.starts_with("qemu-system-x86_64 -machine q35 -m 1024 -smp 2 "));
        assert!(uefi.contains(&format!(
            " -drive if=pflash,unit=0,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
             -drive if=pflash,unit=1,format=raw,file={d}/vars.fd \
             -drive file={d}/o.qcow2,format=qcow2,if=none,id=disk0,cache=unsafe \
             -device virtio-blk-pci,drive=disk0,bootindex=0 -accel tcg "
        )));
        assert!(!uefi.contains("-kernel") && !uefi.contains("-append"));
        assert!(uefi.contains("-serial chardev:console") && !uefi.contains("-serial null"));
        let bios = show(qemu_command(&sh, &spec(Machine::PcBios)));
        assert!(bios.starts_with("qemu-system-x86_64 -machine pc "));
        assert!(!bios.contains("pflash"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
