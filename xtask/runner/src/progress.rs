//! Progress lines for long steps: a spinner with the elapsed time, a bar when the step can tell
//! how far it is (xz blocks, `qemu-img convert -p`). On a terminal the line is redrawn every
//! second; otherwise (CI logs) a line is printed every 30 s.

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads one piece of a command's progress output as (done, total).
pub type ProgressParser = fn(&str) -> Option<(u64, u64)>;

/// `qemu-img convert -p`'s progress: `(45.00/100%)`.
pub fn qemu_img_progress(piece: &str) -> Option<(u64, u64)> {
    let pct = piece.strip_prefix('(')?.strip_suffix("/100%)")?;
    let pct: f64 = pct.parse().ok()?;
    Some(((pct * 100.0) as u64, 10_000))
}

/// A duration as people read it: `42.0s`, `3m07s`.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// Reads a command's stdout to its end: progress pieces set `fraction`, the rest goes to `log`.
pub(crate) fn follow(mut out: impl Read, mut log: std::fs::File, parse: ProgressParser, fraction: &Fraction) {
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

/// How far a step is, when it can tell: per mille, or unknown.
#[derive(Clone)]
pub struct Fraction(Arc<AtomicU32>);

impl Fraction {
    const UNKNOWN: u32 = u32::MAX;
    pub fn new() -> Self {
        Fraction(Arc::new(AtomicU32::new(Self::UNKNOWN)))
    }
    pub fn set(&self, done: u64, total: u64) {
        let permille = (done.min(total) * 1000).checked_div(total).unwrap_or(0);
        self.0.store(permille as u32, Ordering::Relaxed);
    }
    /// ` [###.......]  35%` (empty while unknown).
    pub fn bar(&self) -> String {
        match self.0.load(Ordering::Relaxed) {
            Self::UNKNOWN => String::new(),
            p => {
                let filled = (p as usize * 10) / 1000;
                format!(" [{}{}] {:>3}%", "#".repeat(filled), ".".repeat(10 - filled), p / 10)
            }
        }
    }
}

impl Default for Fraction {
    fn default() -> Self {
        Self::new()
    }
}

/// A progress line for a long step: `  | what [####....]  40% 42s`. Steps that run side by side
/// (the image outputs) share the terminal line: the oldest one draws all.
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
type Active = Vec<(u64, String, Instant, Fraction)>;
static ACTIVE: Mutex<Active> = Mutex::new(Vec::new());
static NEXT_PROGRESS: AtomicU64 = AtomicU64::new(0);

impl Progress {
    pub fn start(what: &str) -> Progress {
        let id = NEXT_PROGRESS.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let fraction = Fraction::new();
        ACTIVE.lock().unwrap().push((id, what.to_string(), t0, fraction.clone()));
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
                        let line: Vec<String> =
                            active.iter().map(|(_, w, t, f)| format!("{w}{} {}", f.bar(), secs(t.elapsed()))).collect();
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
        Progress { id, fraction, stop, thread: Some(thread) }
    }

    pub fn stop(mut self) {
        ACTIVE.lock().unwrap().retain(|a| a.0 != self.id);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
