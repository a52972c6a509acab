//! `cargo xtask image --board NAME`: cross-builds spind and assembles a bootable router image.
//!
//! Stages, each cached under `target/image/<board>/` by a hash of its inputs:
//!
//! | stage   | output                         | key (sha256 of)                                              |
//! |---------|--------------------------------|--------------------------------------------------------------|
//! | spind   | `spind` (stripped release)     | cargo decides; the stage's *output* hash feeds the overlay   |
//! | rootfs  | `rootfs-KEY.tar` (mmdebstrap)  | release, arch, mirror, components, packages, path filters, initramfs modules, hook scripts, SOURCE_DATE_EPOCH |
//! | overlay | `root-KEY.tar` (rootfs+overlay)| rootfs key, `image/debian/overlay` files, board network, spind hash |
//! | disk    | `disk-KEY.img` (raw)           | root key, disk layout, kernel cmdline/consoles, builder version |
//! | outputs | `out/spin-BOARD.*`             | disk key + output kind                                       |
//!
//! A changed spind changes only the overlay key, so only overlay, disk and outputs rerun.
//! Nothing is mounted and no loop device is used: partitions are written into the image file at
//! their offsets (sfdisk, mkfs.fat --offset + mtools, mkfs.ext4 -E offset= -d TAR).

pub mod board;
mod debian;
pub mod elf;
pub mod host;
pub mod inspect;
pub mod ipk;
pub mod openwrt;
mod ova;
mod xzblocks;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::util;
pub use board::Board;

/// Part of every stage key: bump to rebuild everything (the root file system included).
pub const BUILDER_VERSION: &str = "spin-image-1";
/// Part of the overlay and disk keys: bump when the assembly (merging, partitioning, file
/// systems) changes, without rebuilding the root file system.
pub const ASSEMBLY_VERSION: &str = "assembly-3";

/// Timestamps inside images when SOURCE_DATE_EPOCH is not set: 2025-01-01T00:00:00Z.
pub const DEFAULT_EPOCH: u64 = 1_735_689_600;

const HELP: &str = "\
cargo xtask image --board NAME [--check] [--refresh-rootfs]
cargo xtask image --list

  --board NAME       build board-configs/NAME.toml (outputs in target/image/NAME/out/)
  --check            afterwards, inspect the built image (partitions, files, OVA) and assemble
                     the disk again to compare (reproducibility), as the tests do
  --refresh-rootfs   rebuild the Debian root file system even if a cached one matches
                     (to pick up new package versions from the mirror)
  --list             list the boards

OpenWrt boards (glinet-mt3000, glinet-mt6000, glinet-ar150):
  --imagebuilder PATH   an OpenWrt ImageBuilder: its .tar.zst or an unpacked directory
                        (without it, the pinned one is downloaded and checked when online)
  --offline             never download; without --imagebuilder, build spind, the .ipk and
                        the overlay and say how to get the sysupgrade image
  --spind PATH          package this spind binary instead of cross-building it
  --out DIR             where outputs go (default target/images/NAME)
";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut board = None;
    let mut check = false;
    let mut refresh = false;
    let mut openwrt_opts = openwrt::ImageOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n\n{HELP}"))
        };
        match a.as_str() {
            "--board" => board = Some(value("--board")?),
            "--imagebuilder" => {
                openwrt_opts.imagebuilder = Some(PathBuf::from(value("--imagebuilder")?))
            }
            "--spind" => openwrt_opts.spind_binary = Some(PathBuf::from(value("--spind")?)),
            "--out" => openwrt_opts.out_dir = Some(PathBuf::from(value("--out")?)),
            "--offline" => openwrt_opts.offline = true,
            s if s.starts_with("--board=") => board = Some(s["--board=".len()..].to_string()),
            "--check" => check = true,
            "--refresh-rootfs" => refresh = true,
            "--list" => {
                for name in board::names() {
                    match board::load(&name) {
                        Ok(b) => println!(
                            "{name:<16} {:<8} {:<28} {}",
                            b.base, b.rust_target, b.description
                        ),
                        Err(e) => println!("{name:<16} INVALID: {e}"),
                    }
                }
                return Ok(());
            }
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("xtask image: unknown argument {other:?}\n\n{HELP}")),
        }
    }
    let name = board.ok_or_else(|| {
        format!(
            "xtask image: which board? (--board NAME; boards: {})",
            board::names().join(", ")
        )
    })?;
    let board = board::load(&name)?;
    if board.base == "openwrt" {
        let b = openwrt::OpenwrtBoard::from_board(&board)?;
        return openwrt::build(&b, &openwrt_opts).map(|_| ());
    }
    let built = build(
        &board,
        &Options {
            refresh_rootfs: refresh,
        },
    )?;
    if check {
        inspect::check_built(&board, &built)?;
        inspect::check_reproducible(&board, &built)?;
        eprintln!("xtask image: inspection of {} passed", board.name);
    }
    Ok(())
}

pub struct Options {
    pub refresh_rootfs: bool,
}

/// What a build produced.
pub struct Built {
    /// The raw disk image (the disk stage's cached output).
    pub disk: PathBuf,
    /// The merged root file system tar the disk was made from.
    pub root_tar: PathBuf,
    pub out_dir: PathBuf,
    /// Each stage: (name, wall time, from the cache).
    pub stages: Vec<(String, Duration, bool)>,
    /// The whole build's wall time.
    pub total: Duration,
    /// The outputs with their sizes in bytes.
    pub artifacts: Vec<(PathBuf, u64)>,
}

/// Builds every stage of a Debian board, printing timings and artifacts.
pub fn build(board: &Board, opts: &Options) -> Result<Built, String> {
    let t0 = Instant::now();
    let mut timings = Timings::default();
    let ctx = Ctx::new(board)?;

    timings.time("host tools", false, || host::ensure_for(board))?;
    // spind and the root file system do not depend on each other: build them side by side
    // (the release build's long LTO link leaves a core for mmdebstrap).
    let (spind, rootfs) = std::thread::scope(|s| {
        let spind = s.spawn(|| {
            let t = Instant::now();
            eprintln!("xtask image: stage spind");
            debian::build_spind(&ctx)
                .map(|st| (st, t.elapsed()))
                .map_err(|e| format!("stage spind: {e}"))
        });
        let rootfs = timings.time_cached("rootfs (mmdebstrap)", || {
            debian::rootfs(&ctx, opts.refresh_rootfs)
        });
        let spind = spind
            .join()
            .map_err(|_| "stage spind panicked".to_string())
            .and_then(|r| r);
        (spind, rootfs)
    });
    let (spind, spind_time) = spind?;
    let rootfs = rootfs?;
    timings.0.insert(
        timings.0.len() - 1,
        ("spind (cargo build)".into(), spind_time, false),
    );
    let root = timings.time_cached("overlay", || debian::overlay(&ctx, &rootfs, &spind))?;
    let disk = timings.time_cached("disk", || debian::disk(&ctx, &root, &ctx.dir))?;
    let artifacts = timings.time_cached("outputs", || debian::outputs(&ctx, &disk))?;

    let total = t0.elapsed();
    eprintln!("\nxtask image: {} built in {}", board.name, secs(total));
    timings.print();
    eprintln!("artifacts ({}):", ctx.out.display());
    let mut sized = Vec::new();
    for a in &artifacts {
        let size = std::fs::metadata(a).map(|m| m.len()).unwrap_or(0);
        let sum = sha256_file(a)?;
        eprintln!("  {:<44} {:>10}  sha256 {sum}", file_name(a), human(size));
        sized.push((a.clone(), size));
    }
    Ok(Built {
        disk: disk.path.clone(),
        root_tar: root.path.clone(),
        out_dir: ctx.out.clone(),
        stages: timings.0,
        total,
        artifacts: sized,
    })
}

/// Paths and fixed settings of one board's build.
pub struct Ctx<'a> {
    pub board: &'a Board,
    /// `target/image/<board>/`
    pub dir: PathBuf,
    /// `target/image/<board>/out/`
    pub out: PathBuf,
    /// `target/image/<board>/logs/`
    pub logs: PathBuf,
    pub epoch: u64,
}

impl<'a> Ctx<'a> {
    pub fn new(board: &'a Board) -> Result<Self, String> {
        let dir = target_dir().join("image").join(&board.name);
        let out = dir.join("out");
        let logs = dir.join("logs");
        for d in [&dir, &out, &logs] {
            mkdirs(d)?;
        }
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
            Err(_) => DEFAULT_EPOCH,
        };
        Ok(Ctx {
            board,
            dir,
            out,
            logs,
            epoch,
        })
    }
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("target"))
}

/// A stage's output: a path, the key it was made under, whether it came from the cache.
pub struct Stage {
    pub path: PathBuf,
    pub key: String,
    pub cached: bool,
}

pub trait Cached {
    fn cached(&self) -> bool;
}
impl Cached for Stage {
    fn cached(&self) -> bool {
        self.cached
    }
}
impl Cached for Vec<PathBuf> {
    fn cached(&self) -> bool {
        false
    }
}

#[derive(Default)]
struct Timings(Vec<(String, Duration, bool)>);

impl Timings {
    fn time<T>(
        &mut self,
        name: &str,
        cached: bool,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let t = Instant::now();
        let r = f().map_err(|e| format!("stage {name}: {e}"))?;
        self.0.push((name.to_string(), t.elapsed(), cached));
        Ok(r)
    }
    fn time_cached<T: Cached>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let t = Instant::now();
        eprintln!("xtask image: stage {name}");
        let r = f().map_err(|e| format!("stage {name}: {e}"))?;
        self.0.push((name.to_string(), t.elapsed(), r.cached()));
        Ok(r)
    }
    fn print(&self) {
        eprintln!("stage timings:");
        for (name, d, cached) in &self.0 {
            eprintln!(
                "  {name:<22} {:>8}{}",
                secs(*d),
                if *cached { "  (cached)" } else { "" }
            );
        }
    }
}

// ---- helpers shared by the stages -------------------------------------------------------------

pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

pub fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn mkdirs(d: &Path) -> Result<(), String> {
    std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Incremental key builder: every input is length-prefixed so fields cannot run together.
pub struct Key(Sha256);

impl Key {
    pub fn new(stage: &str) -> Self {
        let mut k = Key(Sha256::new());
        k.add(BUILDER_VERSION).add(stage);
        k
    }
    pub fn add(&mut self, s: impl AsRef<[u8]>) -> &mut Self {
        let s = s.as_ref();
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s);
        self
    }
    pub fn add_file(&mut self, p: &Path) -> Result<&mut Self, String> {
        let data = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        self.add(p.to_string_lossy().as_bytes());
        Ok(self.add(data))
    }
    /// 16 hex digits: short enough for file names, long enough not to collide.
    pub fn finish(&self) -> String {
        hex(&self.0.clone().finalize())[..16].to_string()
    }
}

pub fn sha256_file(p: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// A UUID derived from the board and a purpose: fixed across builds (reproducible images),
/// different between boards and purposes. Formatted as a version-4-shaped UUID.
pub fn fixed_uuid(board: &str, purpose: &str) -> String {
    let d = Sha256::digest(format!("spin-image:{board}:{purpose}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Builds a command from a program and its arguments (no shell).
pub fn cmd<S: AsRef<std::ffi::OsStr>>(program: &str, args: impl IntoIterator<Item = S>) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Runs a command to completion; its output goes to `log` (appended). While it runs, a progress
/// line shows the elapsed time. On failure the error names the command and shows the log's tail.
pub fn run_logged(what: &str, c: Command, log: &Path) -> Result<(), String> {
    run_logged_stdin(what, c, log, None)
}

/// [`run_logged`] with a file as standard input.
pub fn run_logged_stdin(
    what: &str,
    c: Command,
    log: &Path,
    stdin: Option<std::fs::File>,
) -> Result<(), String> {
    run_logged_with(what, c, log, stdin, None)
}

/// Reads one piece of a command's progress output as (done, total).
pub type ProgressParser = fn(&str) -> Option<(u64, u64)>;

/// [`run_logged`] for a command that reports how far it is on stdout (`qemu-img convert -p`):
/// `parse` reads one `\r`/`\n`-separated piece of it as (done, total); the progress line
/// becomes a bar. Other output goes to the log.
pub fn run_logged_progress(
    what: &str,
    c: Command,
    log: &Path,
    parse: ProgressParser,
) -> Result<(), String> {
    run_logged_with(what, c, log, None, Some(parse))
}

fn run_logged_with(
    what: &str,
    mut c: Command,
    log: &Path,
    stdin: Option<std::fs::File>,
    parse: Option<ProgressParser>,
) -> Result<(), String> {
    let shown = util::show(&c);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open log {}: {e}", log.display()))?;
    let _ = writeln!(f, "\n$ {shown}");
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    c.stderr(Stdio::from(f2));
    c.stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
    let progress = Progress::start(what);
    let status = match parse {
        None => {
            c.stdout(Stdio::from(f));
            c.status()
        }
        Some(parse) => {
            c.stdout(Stdio::piped());
            c.spawn().and_then(|mut child| {
                let out = child.stdout.take().expect("piped stdout");
                follow_progress(out, f, parse, &progress.fraction);
                child.wait()
            })
        }
    }
    .map_err(|e| format!("cannot run {shown}: {e}"));
    progress.stop();
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        let tail = std::fs::read_to_string(log)
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(25)..].join("\n    ")
            })
            .unwrap_or_default();
        Err(format!(
            "{shown} failed ({status}); last lines of {}:\n    {tail}",
            log.display()
        ))
    }
}

/// Reads a command's stdout to its end: progress pieces set `fraction`, the rest goes to `log`.
fn follow_progress(
    mut out: impl Read,
    mut log: std::fs::File,
    parse: ProgressParser,
    fraction: &Fraction,
) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\r' || b == b'\n') {
            let piece: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&piece[..end]);
            match parse(text.trim()) {
                Some((done, total)) => fraction.set(done, total),
                None if !text.trim().is_empty() => {
                    let _ = writeln!(log, "{}", text.trim_end());
                }
                None => {}
            }
        }
    }
    let _ = log.write_all(&pending);
}

/// `qemu-img convert -p`'s progress: `(45.00/100%)`.
pub fn qemu_img_progress(piece: &str) -> Option<(u64, u64)> {
    let pct = piece.strip_prefix('(')?.strip_suffix("/100%)")?;
    let pct: f64 = pct.parse().ok()?;
    Some(((pct * 100.0) as u64, 10_000))
}

/// Runs a command and returns its stdout; stderr is shown in the error.
pub fn output(mut c: Command) -> Result<String, String> {
    let shown = util::show(&c);
    let o = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    String::from_utf8(o.stdout).map_err(|_| format!("{shown}: output is not UTF-8"))
}

/// How far a step is, when it can tell: per mille, or [`Fraction::UNKNOWN`].
#[derive(Clone)]
pub struct Fraction(Arc<AtomicU32>);

impl Fraction {
    const UNKNOWN: u32 = u32::MAX;
    fn new() -> Self {
        Fraction(Arc::new(AtomicU32::new(Self::UNKNOWN)))
    }
    pub fn set(&self, done: u64, total: u64) {
        let permille = (done.min(total) * 1000).checked_div(total).unwrap_or(0);
        self.0.store(permille as u32, Ordering::Relaxed);
    }
    /// ` [###.......]  35%` (empty while unknown).
    fn bar(&self) -> String {
        match self.0.load(Ordering::Relaxed) {
            Self::UNKNOWN => String::new(),
            p => {
                let filled = (p as usize * 10) / 1000;
                format!(
                    " [{}{}] {:>3}%",
                    "#".repeat(filled),
                    ".".repeat(10 - filled),
                    p / 10
                )
            }
        }
    }
}

/// A progress line for a long step: `  | what [####....]  40% 42s` refreshed every second on a
/// terminal (the bar when the step reports how far it is), a line every 30 s otherwise (CI logs).
/// Steps that run side by side (the outputs) share the terminal line: the oldest one draws all.
pub struct Progress {
    id: u64,
    pub fraction: Fraction,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The terminal's width in columns (80 when it cannot tell).
fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass; nothing else is touched.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 10 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// The steps in progress.
static ACTIVE: Mutex<Vec<(u64, String, Instant, Fraction)>> = Mutex::new(Vec::new());
static NEXT_PROGRESS: AtomicU64 = AtomicU64::new(0);

impl Progress {
    pub fn start(what: &str) -> Progress {
        let id = NEXT_PROGRESS.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let fraction = Fraction::new();
        ACTIVE
            .lock()
            .unwrap()
            .push((id, what.to_string(), t0, fraction.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let what = what.to_string();
        let f = fraction.clone();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::spawn(move || {
            let spin = ['|', '/', '-', '\\'];
            let mut i = 0usize;
            let mut last_line = Instant::now();
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                i += 1;
                if tty && i.is_multiple_of(4) {
                    let active = ACTIVE.lock().unwrap();
                    if active.first().map(|a| a.0) == Some(id) {
                        let line: Vec<String> = active
                            .iter()
                            .map(|(_, w, t, f)| format!("{w}{} {}", f.bar(), secs(t.elapsed())))
                            .collect();
                        let line = format!("  {} {}", spin[(i / 4) % 4], line.join(" | "));
                        // One terminal row: a wrapped line would not be redrawn in place.
                        let line: String = line.chars().take(term_width() - 1).collect();
                        eprint!("\r\x1b[K{line}");
                    }
                } else if !tty && last_line.elapsed() >= Duration::from_secs(30) {
                    eprintln!("  ... {what}{}: {}", f.bar(), secs(t0.elapsed()));
                    last_line = Instant::now();
                }
            }
            if tty {
                eprintln!("\r\x1b[K  {what}: done in {}", secs(t0.elapsed()));
            } else {
                eprintln!("  {what}: done in {}", secs(t0.elapsed()));
            }
        });
        Progress {
            id,
            fraction,
            stop,
            thread: Some(thread),
        }
    }
    pub fn stop(mut self) {
        ACTIVE.lock().unwrap().retain(|a| a.0 != self.id);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Removes older outputs of a stage (`PREFIX-*.EXT` other than `keep`), so the cache holds one.
pub fn prune(dir: &Path, prefix: &str, keep: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let n = file_name(&p);
            if n.starts_with(prefix) && p != keep {
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
}

// ---- the `cargo xtask test` layer ----------------------------------------------------------------

/// Why the image layer cannot run here (mmdebstrap needs root to build a root file system).
pub fn test_layer_missing() -> Option<String> {
    if !util::is_root() {
        return Some("building images needs root (mmdebstrap --mode=root)".into());
    }
    if !Path::new("/etc/debian_version").exists() {
        return Some("building images needs a Debian host (apt, mmdebstrap)".into());
    }
    None
}

/// Builds a board's image (cached stages are reused), inspects it, and assembles the disk a
/// second time to compare.
pub fn test_layer(name: &str) -> Result<(), String> {
    let board = board::load(name)?;
    let built = build(
        &board,
        &Options {
            refresh_rootfs: false,
        },
    )?;
    inspect::check_built(&board, &built)?;
    inspect::check_reproducible(&board, &built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_uuids_are_stable_and_distinct() {
        let a = fixed_uuid("x86_64", "root");
        assert_eq!(a, fixed_uuid("x86_64", "root"));
        assert_ne!(a, fixed_uuid("x86_64", "boot"));
        assert_ne!(a, fixed_uuid("rpi3", "root"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn qemu_img_progress_pieces_and_bars() {
        assert_eq!(qemu_img_progress("(45.00/100%)"), Some((4500, 10_000)));
        assert_eq!(qemu_img_progress("(100.00/100%)"), Some((10_000, 10_000)));
        assert_eq!(qemu_img_progress("qemu-img: warning"), None);
        let f = Fraction::new();
        assert_eq!(f.bar(), "");
        f.set(4500, 10_000);
        assert_eq!(f.bar(), " [####......]  45%");
        f.set(7, 0);
        assert_eq!(f.bar(), " [..........]   0%");
    }

    #[test]
    fn keys_separate_fields() {
        let k1 = Key::new("s").add("ab").add("c").finish();
        let k2 = Key::new("s").add("a").add("bc").finish();
        assert_ne!(k1, k2);
        assert_eq!(k1.len(), 16);
    }
}
