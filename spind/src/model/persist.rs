//! The files spind reads and writes: crash-safe replacement, the state directory layout
//! (`<state_dir>/{block,ignore,allow}.list`, `names.conf`, `namerules.json`, `devicetypes.list`, `names.resolved`, `paused.list`, `bedtimes.list`, `nodepair.list`, `nodestore/`, `history/`), the
//! list file and node-store formats, and OpenWrt's UCI files (read for names and the config).
//!
//! Everything spind persists is small and rewritten whole, so "write a temp file, fsync, rename"
//! is enough to never leave a half-written list behind after a power cut (routers lose power).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use log::warn;
use serde_json::Value;

use crate::model::addr::IpNet;
use crate::model::event::MacAddr;
use crate::model::messages::NodeJson;
use crate::model::nodes::{ListKind, Node, NodeId};

/// Replaces `path` with `data` atomically: writes `<path>.tmp-<pid>` in the same directory
/// (rename is only atomic within one filesystem), fsyncs it, renames it over `path` and fsyncs
/// the directory. On any error the temp file is removed and the previous file is left intact.
/// (One file of [`write_files`]; the core writes its state in batches.)
#[cfg(test)]
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    write_files(&[(path.to_path_buf(), data.to_vec())]).map_err(|e| e.source)
}

/// Replaces `path` with `data` atomically, readable by its owner only: the temp file is made
/// mode 0600, so a secret (a password hash, a WiFi passphrase) is never briefly world-readable.
/// Otherwise as [`write_files`] (its temp-file name, so an interrupted write is cleaned up too).
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_files_with_mode(&[(path.to_path_buf(), data.to_vec())], 0o600).map_err(|e| e.source)
}

/// A file of the state directory could not be written (a full or read-only file system, a
/// path in the way). Nothing of the batch it belonged to was replaced.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Removes `*.tmp-<pid>` and `.spind-probe-<pid>` files that a spind killed mid-write left
/// behind (a SIGKILL or a power cut between writing a temp file and renaming it): without this,
/// every such crash would leave a file in the state directory for good. Only another process's
/// files: this one has written none yet.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let own = format!("-{}", std::process::id());
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = name.rsplit_once(".tmp-").or_else(|| name.rsplit_once(".spind-probe-")).is_some_and(|(_, pid)| {
            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(&own)
        });
        if stale && e.file_type().is_ok_and(|t| t.is_file()) {
            match fs::remove_file(e.path()) {
                Ok(()) => log::info!("removed {}, left by an interrupted write", e.path().display()),
                Err(err) => log::warn!("cannot remove {}: {err}", e.path().display()),
            }
        }
    }
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let mut name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file path", path.display())))?
        .to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(name))
}

/// Replaces several files at once, in two phases: every new content is first written to a temp
/// file beside its target and fsynced; only when all of them are on disk are they renamed over
/// their targets (and the directories fsynced). A full file system fails the first phase, and
/// then no file is replaced and every temp file is removed, so a change that needs several files
/// is either on disk whole or not at all. (A rename needs no space; a power cut between two
/// renames leaves each file whole, old or new.)
pub fn write_files(files: &[(PathBuf, Vec<u8>)]) -> Result<(), WriteError> {
    // The usual mode for new files, less the umask.
    write_files_with_mode(files, 0o666)
}

fn write_files_with_mode(files: &[(PathBuf, Vec<u8>)], mode: u32) -> Result<(), WriteError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |path: &Path, source| WriteError { path: path.to_path_buf(), source };
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    let cleanup = |temps: &[PathBuf]| {
        for t in temps {
            let _ = fs::remove_file(t);
        }
    };
    for (path, data) in files {
        let tmp = temp_path(path).map_err(|e| err(path, e))?;
        // Only remove what we created: the temp path may be something else entirely.
        let mut f = match OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp) {
            Ok(f) => f,
            Err(e) => {
                cleanup(&temps);
                return Err(err(path, e));
            }
        };
        temps.push(tmp);
        if let Err(e) = f.write_all(data).and_then(|()| f.sync_all()) {
            drop(f);
            cleanup(&temps);
            return Err(err(path, e));
        }
    }
    for (i, ((path, _), tmp)) in files.iter().zip(&temps).enumerate() {
        if let Err(e) = fs::rename(tmp, path) {
            cleanup(&temps[i..]);
            return Err(err(path, e));
        }
    }
    // Make the renames themselves durable. Some filesystems refuse fsync on directories; the
    // data is already safe then as far as we can make it, so that is not an error.
    let dirs: BTreeSet<&Path> = files.iter().filter_map(|(p, _)| p.parent()).collect();
    for dir in dirs {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The state directory could not be created or is not writable.
#[derive(Debug)]
pub struct StateError {
    pub dir: PathBuf,
    /// What we were doing ("creating", "writing a probe file in").
    pub action: &'static str,
    pub source: io::Error,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state directory {} is not usable ({} it failed: {}); choose another with --state-dir DIR",
            self.dir.display(),
            self.action,
            self.source
        )
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The directory holding everything spind persists (SPIN: `/etc/spin`).
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates `root` and `root/nodestore` if missing and proves `root` is writable, so that a
    /// bad state directory stops the daemon at start instead of losing the first block list.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let err = |action, source| StateError { dir: root.to_path_buf(), action, source };
        fs::create_dir_all(root.join("nodestore")).map_err(|e| err("creating", e))?;
        // Permission bits say nothing when running as root (and read-only mounts ignore them),
        // so really write something.
        let probe = root.join(format!(".spind-probe-{}", std::process::id()));
        let written = File::create(&probe).and_then(|mut f| f.write_all(b"probe\n"));
        let _ = fs::remove_file(&probe);
        written.map_err(|e| err("writing a probe file in", e))?;
        remove_stale_temp_files(root);
        remove_stale_temp_files(&root.join("nodestore"));
        Ok(StateDir { root: root.to_path_buf() })
    }

    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/history/`: the per-device history and alerts (`model::history`), with what
    /// interrupted writes left there cleared.
    pub fn history_dir(&self) -> PathBuf {
        let dir = self.root.join("history");
        remove_stale_temp_files(&dir);
        dir
    }

    /// `<root>/<name>.list`, e.g. `block.list`.
    pub fn list_file(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.list"))
    }

    /// `<root>/names.conf` (user-set device names).
    pub fn names_file(&self) -> PathBuf {
        self.root.join("names.conf")
    }

    /// `<root>/<name>.withdrawn`: addresses the user took off list `<name>` by hand; a node's
    /// list flag never puts them back (only an explicit add does).
    pub fn withdrawn_file(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.withdrawn"))
    }

    /// `<root>/nodepair.list` (blocked node pairs).
    pub fn nodepair_file(&self) -> PathBuf {
        self.root.join("nodepair.list")
    }

    /// `<root>/nodeunpair.list` (node pairs the user unblocked, so a merge does not block them
    /// again with an older decision).
    pub fn nodeunpair_file(&self) -> PathBuf {
        self.root.join("nodeunpair.list")
    }

    /// `<root>/namerules.json` (the name rules, issue 13).
    pub fn name_rules_file(&self) -> PathBuf {
        self.root.join("namerules.json")
    }

    /// `<root>/names.resolved` (addresses of blocked names with their expiry and names).
    pub fn name_resolved_file(&self) -> PathBuf {
        self.root.join("names.resolved")
    }

    /// Paused devices (`pause_device`): `MAC UNTIL` a line.
    pub fn paused_file(&self) -> PathBuf {
        self.root.join("paused.list")
    }

    /// `<root>/devicetypes.list`: the types the user gave devices (`set_device_type`), `MAC TYPE`
    /// a line.
    pub fn device_types_file(&self) -> PathBuf {
        self.root.join("devicetypes.list")
    }

    /// Device bedtimes (`set_device_schedule`): `MAC SCHEDULE` a line.
    pub fn device_schedules_file(&self) -> PathBuf {
        self.root.join("bedtimes.list")
    }

    /// The services switched off (`set_service`): `ID` or `ID MAC` a line.
    pub fn services_file(&self) -> PathBuf {
        self.root.join("services.list")
    }

    /// `<root>/blocklists.json` (the household's blocklists: URLs or files, devices, labels, the
    /// last download's time and error).
    pub fn blocklists_file(&self) -> PathBuf {
        self.root.join("blocklists.json")
    }

    /// `<root>/blocklists/`: the last good copy of each household blocklist (`<id>.list`, renamed
    /// into place by the fetcher), with what an interrupted download left there cleared.
    pub fn blocklists_dir(&self) -> PathBuf {
        let dir = self.root.join("blocklists");
        remove_stale_temp_files(&dir);
        dir
    }

    /// `<root>/nodestore/` (JSON of nodes taking part in flow blocks).
    pub fn nodestore_dir(&self) -> PathBuf {
        self.root.join("nodestore")
    }
}

// ---- the list files and the node store ----------------------------------------------------

/// Reads a list file (`<state_dir>/<list>.list`, one address or prefix per line, SPIN's format);
/// a missing file is an empty list. Bad lines are reported, not fatal. As SPIN, a last line
/// without its newline is ignored (it may be a torn write by an older tool).
pub fn read_list(path: &Path) -> (Vec<IpNet>, Vec<String>) {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (entries, warnings),
        Err(e) => {
            warnings.push(format!("{}: cannot read: {e}", path.display()));
            return (entries, warnings);
        }
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    for (no, line) in complete.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<IpNet>() {
            Ok(net) => entries.push(net),
            Err(e) => warnings.push(format!("{}:{}: {e}", path.display(), no + 1)),
        }
    }
    (entries, warnings)
}

/// The text of a list file, one entry per line (a prefix keeps its `/len`).
pub fn list_text<'a>(entries: impl Iterator<Item = &'a IpNet>) -> String {
    let mut text = String::new();
    for e in entries {
        text.push_str(&e.to_string());
        text.push('\n');
    }
    text
}

/// Writes a list file atomically, one entry per line (a prefix keeps its `/len`).
#[cfg(test)]
pub fn write_list<'a>(path: &Path, entries: impl Iterator<Item = &'a IpNet>) -> io::Result<()> {
    atomic_write(path, list_text(entries).as_bytes())
}

/// A node as the node store keeps it: what is needed to recreate it after a restart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredNode {
    pub mac: Option<MacAddr>,
    pub ips: Vec<IpAddr>,
    pub domains: Vec<String>,
    pub name: Option<String>,
    /// `None`: the file has none (the node is then as old as the restart).
    pub last_seen: Option<i64>,
    pub blocked: bool,
    pub excepted: bool,
    pub ignored: bool,
}

impl StoredNode {
    /// Reads the JSON of a `nodestore/<id>` file; fields that are missing or of the wrong type
    /// are left out rather than fatal.
    pub fn parse(text: &str) -> Result<StoredNode, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let strs = |key: &str| -> Vec<String> {
            v[key]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        let flag = |key: &str| v[key].as_bool() == Some(true);
        Ok(StoredNode {
            mac: v["mac"].as_str().and_then(|m| m.parse().ok()),
            ips: strs("ips").iter().filter_map(|s| s.parse().ok()).collect(),
            domains: strs("domains"),
            name: v["name"].as_str().map(String::from),
            last_seen: v["lastseen"].as_i64(),
            blocked: flag("is_blocked"),
            excepted: flag("is_excepted"),
            ignored: flag("is_ignored"),
        })
    }
}

/// One flow-block decision as stored: the pair (old ids) and the order it was taken in (0 when
/// the file has none, as SPIN's `nodepair.list`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredPair {
    pub a: NodeId,
    pub b: NodeId,
    pub seq: u64,
}

/// What the node store held at start, under the ids of the previous run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeStore {
    /// The stored nodes by their old ids, in id order.
    pub nodes: Vec<(NodeId, StoredNode)>,
    /// The blocked pairs (`nodepair.list`).
    pub pairs: Vec<StoredPair>,
    /// The pairs the user unblocked (`nodeunpair.list`).
    pub unpairs: Vec<StoredPair>,
}

/// The text of `nodepair.list`/`nodeunpair.list`: `<id> <id> <order>` per line (SPIN wrote
/// `<id> <id>`; the third column is ours and optional when read).
pub fn pairs_text(pairs: &[StoredPair]) -> String {
    pairs.iter().map(|p| format!("{} {} {}\n", p.a, p.b, p.seq)).collect()
}

/// The text of a `nodestore/<id>` file: the node's JSON as SPIN's (`NodeJson`), plus
/// `"is_ignored":true` for a node on the ignore list.
pub fn node_store_text(n: &Node) -> String {
    let mut v = serde_json::to_value(NodeJson::of(n)).expect("node serializes");
    if n.on_list(ListKind::Ignore) {
        v["is_ignored"] = Value::Bool(true);
    }
    v.to_string()
}

impl StateDir {
    /// The files of the node store for these persistent nodes and decisions: `nodestore/<id>`
    /// per node, `nodepair.list` and `nodeunpair.list`. Written with [`write_files`]; files of
    /// other nodes are removed afterwards with [`StateDir::remove_other_nodes`].
    pub fn node_store_files(
        &self,
        nodes: &[&Node],
        pairs: &[StoredPair],
        unpairs: &[StoredPair],
    ) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = self.nodestore_dir();
        let mut files: Vec<(PathBuf, Vec<u8>)> =
            nodes.iter().map(|n| (dir.join(n.id.to_string()), node_store_text(n).into_bytes())).collect();
        files.push((self.nodepair_file(), pairs_text(pairs).into_bytes()));
        files.push((self.nodeunpair_file(), pairs_text(unpairs).into_bytes()));
        files
    }

    /// Removes `nodestore/<id>` of every node not in `keep` (removing needs no space).
    pub fn remove_other_nodes(&self, keep: &BTreeSet<NodeId>) {
        if let Ok(entries) = fs::read_dir(self.nodestore_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.parse::<NodeId>().is_ok_and(|id| !keep.contains(&id)) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Reads the node store. Unreadable files and bad lines are logged and skipped.
    pub fn load_node_store(&self) -> NodeStore {
        let mut nodes = Vec::new();
        let (pairs, unpairs) = (read_pairs(&self.nodepair_file()), read_pairs(&self.nodeunpair_file()));
        let Ok(entries) = fs::read_dir(self.nodestore_dir()) else { return NodeStore { nodes, pairs, unpairs } };
        let mut files: Vec<(NodeId, PathBuf)> =
            entries.flatten().filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path()))).collect();
        files.sort();
        for (old_id, path) in files {
            match fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| StoredNode::parse(&t)) {
                Ok(n) => nodes.push((old_id, n)),
                Err(e) => warn!("ignoring unreadable node store file {}: {e}", path.display()),
            }
        }
        NodeStore { nodes, pairs, unpairs }
    }
}

/// `<id> <id> [<order>]` lines; a missing file is no pairs.
fn read_pairs(path: &Path) -> Vec<StoredPair> {
    let mut pairs = Vec::new();
    let Ok(text) = fs::read_to_string(path) else { return pairs };
    for line in text.lines() {
        let ids: Vec<Option<u64>> = line.split_whitespace().map(|s| s.parse().ok()).collect();
        match ids[..] {
            [Some(a), Some(b)] => pairs.push(StoredPair { a, b, seq: 0 }),
            [Some(a), Some(b), Some(seq)] => pairs.push(StoredPair { a, b, seq }),
            _ if line.trim().is_empty() => {}
            _ => warn!("ignoring bad line in {}: {line:?}", path.display()),
        }
    }
    pairs
}

// ---- OpenWrt UCI files (/etc/config/dhcp for names, /etc/config/spin for the config) ----

/// One statement of an OpenWrt UCI file.
#[derive(Debug, PartialEq)]
pub enum UciLine {
    Blank,
    Package,
    Config { kind: String, name: Option<String> },
    Option { key: String, value: String },
    List { key: String, value: String },
}

/// Parses one UCI line; `None` for a line that is not UCI. Values may be bare or quoted with
/// `'…'`/`"…"`; a backslash before the quote character does not end the value and is kept
/// (`'Foo \' dus'` → `Foo \' dus`), as SPIN's reader does.
pub fn uci_line(line: &str) -> Option<UciLine> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Some(UciLine::Blank);
    }
    let mut rest = line;
    let keyword = uci_token(&mut rest)?;
    let a = uci_token(&mut rest);
    let b = uci_token(&mut rest);
    match keyword.as_str() {
        "package" => Some(UciLine::Package),
        "config" => Some(UciLine::Config { kind: a?, name: b }),
        "option" => Some(UciLine::Option { key: a?, value: b.unwrap_or_default() }),
        "list" => Some(UciLine::List { key: a?, value: b.unwrap_or_default() }),
        _ => None,
    }
}

/// Takes the next bare or quoted token off the front of `rest`.
fn uci_token(rest: &mut &str) -> Option<String> {
    let s = rest.trim_start();
    if s.is_empty() || s.starts_with('#') {
        *rest = "";
        return None;
    }
    let first = s.chars().next()?;
    if first == '\'' || first == '"' {
        let body = &s[1..];
        let mut prev_backslash = false;
        for (i, c) in body.char_indices() {
            if c == first && !prev_backslash {
                *rest = &body[i + 1..];
                return Some(body[..i].to_string());
            }
            prev_backslash = c == '\\' && !prev_backslash;
        }
        // Unterminated quote: take the rest of the line rather than lose the value.
        *rest = "";
        Some(body.to_string())
    } else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        *rest = &s[end..];
        Some(s[..end].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lists::IpList;

    #[test]
    fn atomic_write_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.list");
        atomic_write(&p, b"192.0.2.1\n").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"192.0.2.1\n");
        atomic_write(&p, b"").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"");
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("block.list")]);
    }

    #[test]
    fn failed_write_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("names.conf");
        atomic_write(&p, b"old\n").unwrap();
        // A directory where the temp file should go makes the write impossible.
        let tmp = dir.path().join(format!("names.conf.tmp-{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        assert!(atomic_write(&p, b"new\n").is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old\n");
        assert!(tmp.is_dir(), "must not remove what it did not create");

        // Renaming over a directory fails after the temp file was written: it is cleaned up.
        let d = dir.path().join("adir");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("keep"), b"x").unwrap();
        assert!(atomic_write(&d, b"new").is_err());
        assert!(d.join("keep").exists());
        assert!(!dir.path().join(format!("adir.tmp-{}", std::process::id())).exists());
    }

    #[test]
    fn write_into_a_file_as_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("file");
        fs::write(&f, b"x").unwrap();
        assert!(atomic_write(&f.join("sub"), b"y").is_err());
        assert_eq!(fs::read(&f).unwrap(), b"x");
    }

    #[test]
    fn state_dir_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/spin");
        let s = StateDir::open(&root).unwrap();
        assert!(root.join("nodestore").is_dir());
        assert_eq!(s.root(), root);
        assert_eq!(s.list_file("block"), root.join("block.list"));
        assert_eq!(s.names_file(), root.join("names.conf"));
        assert_eq!(s.nodepair_file(), root.join("nodepair.list"));
        assert_eq!(s.nodestore_dir(), root.join("nodestore"));
        // Only the nodestore: the probe is gone.
        assert_eq!(fs::read_dir(&root).unwrap().count(), 1);
        // Opening again is fine.
        StateDir::open(&root).unwrap();
    }

    #[test]
    fn state_dir_under_a_file_fails_with_a_helpful_message() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plainfile");
        fs::write(&f, b"x").unwrap();
        let root = f.join("spin");
        let e = StateDir::open(&root).unwrap_err().to_string();
        assert!(e.contains(&root.display().to_string()), "{e}");
        assert!(e.contains("--state-dir"), "{e}");
        assert!(e.contains("os error"), "{e}");
    }

    #[test]
    fn uci_tokens() {
        assert_eq!(
            uci_line("  option name 'Foo \\' dus'"),
            Some(UciLine::Option { key: "name".into(), value: "Foo \\' dus".into() })
        );
        assert_eq!(
            uci_line("option name \"bar\\\" enzo\""),
            Some(UciLine::Option { key: "name".into(), value: "bar\\\" enzo".into() })
        );
        assert_eq!(uci_line("option name Foo"), Some(UciLine::Option { key: "name".into(), value: "Foo".into() }));
        assert_eq!(
            uci_line("config dhcp 'lan'"),
            Some(UciLine::Config { kind: "dhcp".into(), name: Some("lan".into()) })
        );
        assert_eq!(uci_line("config host"), Some(UciLine::Config { kind: "host".into(), name: None }));
        assert_eq!(uci_line("   # x"), Some(UciLine::Blank));
        assert_eq!(uci_line("frobnicate"), None);
        assert_eq!(uci_line("option"), None);
    }

    #[test]
    fn files_round_trip_and_skip_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.list");
        std::fs::write(&p, "192.0.2.1\nnonsense\n2001:DB8::1:2\n10.0.0.0/8\n192.0.2.9").unwrap();
        let (entries, warnings) = read_list(&p);
        let mut l = IpList::default();
        for e in entries {
            l.add(e);
        }
        assert_eq!(l.to_strings(), ["10.0.0.0/8", "192.0.2.1", "2001:db8::1:2"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(":2:"), "{warnings:?}");
        write_list(&p, l.entries()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "10.0.0.0/8\n192.0.2.1\n2001:db8::1:2\n");
    }
}
