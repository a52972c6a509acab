//! The blocklist fetcher (issue 13): a thread of its own (`spind-fetch`) that keeps the
//! household's blocklists fresh, so a slow or dead download never holds up the core. It
//! downloads a URL list with the router's own fetcher (`blocklist_fetch_command`: curl on
//! Debian, uclient-fetch on OpenWrt; spind has no TLS of its own in router builds) run as a
//! child process with arguments only, never a shell, into a temp file in the state directory;
//! a file list is copied the same way. The copy is read with the bounded reader
//! (`model::blocklist`) and, if it gave names, renamed over the list's cached copy (fsynced, so
//! the list holds after a restart without network) and handed to the core as
//! `Event::BlocklistFetched`. A failed, oversized or empty download is removed and reported;
//! the previous copy stays.
//!
//! Each list is fetched `blocklist_refresh` seconds after its last good copy (at once when it
//! has none), after a failure again within an hour, and at once when the core asks
//! (`add_blocklist`, `refresh_blocklists`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::blocklist::{self, NameSet, MAX_NAMES};
use crate::model::event::{Event, Input, Timestamp};
use crate::model::listsources::{cache_file, FetchJob, FetchQueue, Fetched, Source, MAX_BYTES};

/// Longest a download may take, whatever the command's own limit says (uclient-fetch's `-T` is
/// per read, not for the whole transfer).
const FETCH_DEADLINE: Duration = Duration::from_secs(300);
/// A failed list is tried again after this long (or its refresh interval, if shorter).
const RETRY_AFTER: Timestamp = 3600;
/// Most of the fetcher's error output kept for the list's `error`.
const MAX_ERROR: usize = 300;

/// What the fetcher needs: the command (words; `{url}` and `{file}` replaced in each), the
/// refresh interval, the lists' directory (`<state_dir>/blocklists`) and the clock.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    pub command: Vec<String>,
    pub refresh: Timestamp,
    pub dir: PathBuf,
    pub clock: fn() -> Timestamp,
}

impl FetchSettings {
    /// The `blocklist_fetch_command` setting split into words.
    pub fn command_words(setting: &str) -> Vec<String> {
        setting.split_whitespace().map(str::to_string).collect()
    }
}

/// Starts the fetcher thread; the core tells it the lists through the returned queue, and it
/// sends what it loaded into `tx`.
pub fn start(settings: FetchSettings, tx: Sender<Input>) -> std::io::Result<Arc<FetchQueue>> {
    std::fs::create_dir_all(&settings.dir)?;
    let queue = Arc::new(FetchQueue::default());
    let q = queue.clone();
    std::thread::Builder::new().name("spind-fetch".into()).spawn(move || run(&settings, &q, &tx))?;
    Ok(queue)
}

fn run(s: &FetchSettings, queue: &FetchQueue, tx: &Sender<Input>) {
    // Every list, and when it is due next.
    let mut jobs: Vec<(FetchJob, Timestamp)> = Vec::new();
    loop {
        let now = (s.clock)();
        let next = jobs.iter().map(|(_, due)| *due).min();
        let wait = next.map_or(RETRY_AFTER, |t| (t - now).clamp(0, RETRY_AFTER));
        if let Some(r) = queue.wait(Duration::from_secs(wait as u64)) {
            let now = (s.clock)();
            let old = std::mem::take(&mut jobs);
            for j in r.jobs {
                let known = old.iter().find(|(o, _)| o.id == j.id).map(|(_, due)| *due);
                let due = known.unwrap_or_else(|| j.updated.map_or(now, |u| u + s.refresh));
                let due = if r.now.contains(&j.id) { now } else { due };
                jobs.push((j, due));
            }
        }
        let now = (s.clock)();
        for (j, due) in &mut jobs {
            if *due > now {
                continue;
            }
            let outcome = fetch(s, j);
            let again = if outcome.is_ok() { s.refresh } else { s.refresh.min(RETRY_AFTER) };
            *due = (s.clock)() + again;
            if tx.send(Input::Event(Event::BlocklistFetched { id: j.id, outcome })).is_err() {
                return;
            }
        }
    }
}

/// Downloads (or copies) list `job` and loads it; on success its cached copy is replaced.
pub fn fetch(s: &FetchSettings, job: &FetchJob) -> Result<Fetched, String> {
    let cache = cache_file(&s.dir, job.id);
    let tmp = s.dir.join(format!("{}.list.tmp-{}", job.id, std::process::id()));
    let err = s.dir.join(format!("{}.err.tmp-{}", job.id, std::process::id()));
    let r = fetch_into(s, job, &tmp, &err).and_then(|()| load(&tmp, job)).and_then(|f| {
        keep(&tmp, &cache).map_err(|e| format!("cannot keep the copy in {}: {e}", cache.display()))?;
        Ok(f)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn fetch_into(s: &FetchSettings, job: &FetchJob, tmp: &Path, err: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(tmp);
    match &job.source {
        Source::File(path) => copy_bounded(path, tmp),
        Source::Url(url) => download(s, url, tmp, err),
    }
}

/// Copies at most [`MAX_BYTES`] of a local list (a plain loop: `io::copy`'s kernel-copy paths
/// cost binary size).
fn copy_bounded(path: &Path, tmp: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = std::fs::File::create(tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let mut buf = [0u8; 8192];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        if total > MAX_BYTES {
            return Err(format!("{} is larger than {} MB", path.display(), MAX_BYTES >> 20));
        }
        out.write_all(&buf[..n]).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
}

/// Runs the fetch command for `url` into `tmp`: arguments only, no shell, its
/// error output kept in a file beside (a pipe could fill and stall it). Killed when it runs
/// past [`FETCH_DEADLINE`] or its file grows past [`MAX_BYTES`].
fn download(s: &FetchSettings, url: &str, tmp: &Path, err_path: &Path) -> Result<(), String> {
    let file = tmp.to_str().ok_or("the state directory's path is not UTF-8")?;
    let words: Vec<String> = s.command.iter().map(|w| w.replace("{url}", url).replace("{file}", file)).collect();
    let (program, args) = words.split_first().ok_or("blocklist_fetch_command is empty")?;
    let err_file = std::fs::File::create(err_path).map_err(|e| format!("cannot write {}: {e}", err_path.display()))?;
    // No fixed locale (unlike nft, whose messages are parsed): the error is only shown, and
    // `Command::env` out of line again costs binary size.
    let spawned = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(err_file).spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(err_path);
            return Err(format!("cannot run {program} (blocklist_fetch_command): {e}"));
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for {program}: {e}")),
        }
        let size = std::fs::metadata(tmp).map(|m| m.len()).unwrap_or(0);
        let why = if size > MAX_BYTES {
            Some(format!("the download is larger than {} MB", MAX_BYTES >> 20))
        } else if started.elapsed() > FETCH_DEADLINE {
            Some(format!("the download took longer than {} s", FETCH_DEADLINE.as_secs()))
        } else {
            None
        };
        if let Some(why) = why {
            let _ = child.kill();
            let _ = child.wait();
            break Err(why);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = Vec::new();
    if let Ok(f) = std::fs::File::open(err_path) {
        let _ = f.take(MAX_ERROR as u64).read_to_end(&mut stderr);
    }
    let _ = std::fs::remove_file(err_path);
    let status = status?;
    if !status.success() {
        let code = status.code().unwrap_or(-1);
        let msg = String::from_utf8_lossy(&stderr).trim().replace('\n', " ");
        return Err(format!("{program} failed (exit {code}): {msg}"));
    }
    match std::fs::metadata(tmp) {
        Ok(m) if m.len() > MAX_BYTES => Err(format!("the download is larger than {} MB", MAX_BYTES >> 20)),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{program} wrote no file")),
    }
}

/// Reads the copy with the bounded reader; a copy without a single name is not taken (an error
/// page, a truncated download, the wrong URL).
fn load(tmp: &Path, job: &FetchJob) -> Result<Fetched, String> {
    let f = std::fs::File::open(tmp).map_err(|e| format!("cannot read the download: {e}"))?;
    let label = match &job.source {
        Source::Url(u) => u.clone(),
        Source::File(p) => p.display().to_string(),
    };
    let mut set = NameSet::new();
    let counts = blocklist::load_with(std::io::BufReader::with_capacity(64 << 10, f), &label, &mut set, &[], MAX_NAMES);
    if let Some(e) = &counts.error {
        return Err(format!("cannot read the download: {e}"));
    }
    if set.is_empty() {
        return Err(format!("no names in it ({} lines skipped): not a blocklist?", counts.skipped));
    }
    set.shrink_to_fit();
    Ok(Fetched { names: Arc::new(set), counts })
}

/// The good copy replaces the cached one: fsynced, renamed, the directory fsynced.
fn keep(tmp: &Path, cache: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(tmp)?.sync_all()?;
    std::fs::rename(tmp, cache)?;
    if let Some(dir) = cache.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, command: &str) -> FetchSettings {
        FetchSettings {
            command: FetchSettings::command_words(command),
            refresh: 86_400,
            dir: dir.to_path_buf(),
            clock: || 0,
        }
    }

    fn url_job(id: u64) -> FetchJob {
        FetchJob { id, source: Source::Url("http://lists.example/ads.txt".into()), updated: None }
    }

    #[test]
    fn a_good_copy_replaces_the_cache_and_a_failed_or_empty_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("served.txt");
        std::fs::write(&src, "0.0.0.0 one.example\n||two.example^\n").unwrap();
        // `cp SERVED {file}` stands in for the download (the URL is not used by it).
        let good = settings(dir.path(), &format!("cp {} {{file}}", src.display()));
        let f = fetch(&good, &url_job(7)).unwrap();
        assert_eq!(f.names.len(), 2);
        let cache = cache_file(dir.path(), 7);
        assert!(std::fs::read_to_string(&cache).unwrap().contains("one.example"));

        // The command fails: its message is reported, the cache stays, no temp file is left.
        let failing = settings(dir.path(), "ls /nonexistent-spind-list {file} {url}");
        let e = fetch(&failing, &url_job(7)).unwrap_err();
        assert!(e.starts_with("ls failed") && e.contains("nonexistent-spind-list"), "{e}");
        // Garbage (no name in it) is not taken either.
        std::fs::write(&src, "<html><body>Not found</body></html>\n").unwrap();
        let e = fetch(&good, &url_job(7)).unwrap_err();
        assert!(e.contains("no names"), "{e}");
        // A command that writes nothing, one that does not exist.
        assert!(fetch(&settings(dir.path(), "true {url} {file}"), &url_job(7)).unwrap_err().contains("wrote no file"));
        let e = fetch(&settings(dir.path(), "/nonexistent/fetcher {url} {file}"), &url_job(7)).unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
        assert!(std::fs::read_to_string(&cache).unwrap().contains("two.example"), "the old copy stays");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "only the served file and the cache: {left:?}");
    }

    #[test]
    fn a_file_list_is_copied_bounded_and_its_url_never_reaches_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("local.txt");
        std::fs::write(&src, "local.example\n").unwrap();
        let s = settings(dir.path(), "false {url} {file}");
        let job = FetchJob { id: 3, source: Source::File(src.clone()), updated: None };
        assert!(fetch(&s, &job).unwrap().names.contains(&b"local.example"[..]), "no command for a file");
        let big = std::fs::File::create(&src).unwrap();
        big.set_len(MAX_BYTES + 1).unwrap();
        assert!(fetch(&s, &job).unwrap_err().contains("larger than 20 MB"));
        // The URL is one argument of the command, never a shell's text.
        let s = settings(dir.path(), "cp {url} {file}");
        let job =
            FetchJob { id: 5, source: Source::Url("http://x/;touch${IFS}/tmp/spind-pwned".into()), updated: None };
        assert!(fetch(&s, &job).is_err());
        assert!(!Path::new("/tmp/spind-pwned").exists());
    }
}
