//! The household's blocklists (issue 13), managed by JSON-RPC beside the `blocklist_files` of
//! the config: each from an `http(s)://` URL or a local file, for every device or for chosen
//! ones (by MAC), with a label. What `add_blocklist` receives is checked here (errors name the
//! field); the lists are kept in `<state_dir>/blocklists.json` (written by the core's atomic
//! batches), the last good copy of each in `<state_dir>/blocklists/<id>.list` (written by the
//! fetcher, `sources/fetch`, with an atomic rename, and read here at start), so a list holds
//! after a restart without network.
//!
//! The fetcher downloads in a thread of its own and hands the core what it loaded
//! ([`Fetched`], in `Event::BlocklistFetched`); a failed or empty download leaves the previous
//! copy in force and is reported in the list's `error`. What each list blocked today is counted
//! on the DNS verdict path ([`BlockCounter`]s shared with the [`NameMatcher`]'s lists).
//!
//! [`NameMatcher`]: crate::model::policy::NameMatcher

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::model::blocklist::{self, ListCounts, NameSet, MAX_NAMES};
use crate::model::event::{MacAddr, Timestamp};
use crate::model::policy::{BlockCounter, MatchList};

/// Most lists the household may add (each is a download and a set in memory).
pub const MAX_LISTS: usize = 64;
/// Longest URL or file path taken.
const MAX_SOURCE: usize = 2048;
/// Longest label.
const MAX_LABEL: usize = 64;
/// Largest download or file read (the default fetch command says the same to curl).
pub const MAX_BYTES: u64 = 20 << 20;

/// Where a list comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Url(String),
    File(PathBuf),
}

/// A list as the household defined it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListDef {
    pub id: u64,
    pub source: Source,
    /// Empty: every device.
    pub devices: Vec<MacAddr>,
    pub label: Option<String>,
}

/// A URL the fetch command may be given: `http://` or `https://`, a host, no spaces or control
/// characters (it is one argument of a command, never a shell's text, but the fetcher parses it).
pub fn check_url(url: &str) -> Result<String, String> {
    if url.len() > MAX_SOURCE {
        return Err(format!("longer than {MAX_SOURCE} bytes"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("'{url}' is not an http:// or https:// URL"))?;
    if url.bytes().any(|b| b <= b' ' || b == 0x7f || !b.is_ascii()) {
        return Err("has a space, a control or a non-ASCII character".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    if host.is_empty() || host.starts_with('-') {
        return Err(format!("'{url}' names no host"));
    }
    Ok(url.to_string())
}

/// A local file: an absolute path.
pub fn check_file(path: &str) -> Result<PathBuf, String> {
    if path.len() > MAX_SOURCE {
        return Err(format!("longer than {MAX_SOURCE} bytes"));
    }
    if !path.starts_with('/') || path.contains('\0') {
        return Err("not an absolute path".into());
    }
    Ok(PathBuf::from(path))
}

/// What `add_blocklist` was given (`url` or `file`, `devices`, `name`), checked: `Err((field,
/// why))` names the bad field.
pub fn parse_def(
    url: Option<&str>,
    file: Option<&str>,
    devices: &[&str],
    label: Option<&str>,
) -> Result<ListDef, (&'static str, String)> {
    let source = match (url, file) {
        (Some(u), None) => Source::Url(check_url(u.trim()).map_err(|e| ("url", e))?),
        (None, Some(f)) => Source::File(check_file(f).map_err(|e| ("file", e))?),
        (Some(_), Some(_)) => return Err(("url", "give either 'url' or 'file', not both".into())),
        (None, None) => return Err(("url", "missing: give 'url' (http:// or https://) or 'file'".into())),
    };
    let macs = crate::model::namerules::device_macs(devices)?;
    let label = match label.map(str::trim) {
        None | Some("") => None,
        Some(l) if l.len() > MAX_LABEL || l.chars().any(char::is_control) => {
            return Err(("name", format!("at most {MAX_LABEL} bytes without control characters")))
        }
        Some(l) => Some(l.to_string()),
    };
    Ok(ListDef { id: 0, source, devices: macs, label })
}

/// What the fetcher loaded from a good download (or file): the names and what the lines gave.
#[derive(Clone)]
pub struct Fetched {
    pub names: Arc<NameSet>,
    pub counts: ListCounts,
}

// By hand, not derived: a derived `Debug`/`PartialEq` of the whole set is code for nothing.
impl PartialEq for Fetched {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.names, &o.names) && self.counts == o.counts
    }
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetched({} names, {:?})", self.names.len(), self.counts)
    }
}

/// One list the fetcher keeps fresh: where from, and when it was last loaded well (the next
/// refresh is due `blocklist_refresh` seconds after that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchJob {
    pub id: u64,
    pub source: Source,
    pub updated: Option<Timestamp>,
}

/// The core's word to the fetcher: every list there is now (others are forgotten), and the ones
/// to fetch at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub jobs: Vec<FetchJob>,
    pub now: Vec<u64>,
}

/// Where the core leaves its requests for the fetcher: the latest one, later ones merged into
/// it (a mutex and a condition variable rather than one more channel type: each costs binary
/// size on a router with kilobytes to spare).
#[derive(Debug, Default)]
pub struct FetchQueue {
    pending: Mutex<Option<FetchRequest>>,
    wake: Condvar,
}

impl FetchQueue {
    pub fn push(&self, r: FetchRequest) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match p.as_mut() {
            Some(old) => {
                old.jobs = r.jobs;
                old.now.extend(r.now);
            }
            None => *p = Some(r),
        }
        self.wake.notify_one();
    }

    /// The waiting request, if one comes within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<FetchRequest> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            p = self.wake.wait_timeout(p, timeout).unwrap_or_else(|e| e.into_inner()).0;
        }
        p.take()
    }
}

/// A list and what is in force of it.
#[derive(Clone, Debug)]
pub struct ListState {
    pub def: ListDef,
    /// The last good copy's names (empty until the first one).
    pub names: Arc<NameSet>,
    pub counts: ListCounts,
    /// Unix time of the last good download.
    pub updated: Option<Timestamp>,
    /// Why the last try failed (the previous copy stays in force).
    pub error: Option<String>,
    pub blocked: BlockCounter,
}

impl ListState {
    fn new(def: ListDef) -> ListState {
        let counts = ListCounts { file: source_text(&def.source).to_string(), ..Default::default() };
        ListState { def, names: Arc::default(), counts, updated: None, error: None, blocked: BlockCounter::default() }
    }
}

#[cfg(test)]
impl PartialEq for ListState {
    fn eq(&self, o: &Self) -> bool {
        self.def == o.def && self.updated == o.updated && self.error == o.error && self.counts == o.counts
    }
}

/// Every list, by id, and the next id to hand out (ids are never reused). A `Vec` in id order
/// (at most [`MAX_LISTS`]): a map type of its own would cost binary size.
#[derive(Clone, Debug, Default)]
#[cfg_attr(test, derive(PartialEq))]
pub struct ListSources {
    lists: Vec<ListState>,
    next_id: u64,
}

impl ListSources {
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// The id of a list with the same source and devices, if there is one.
    pub fn same_as(&self, def: &ListDef) -> Option<u64> {
        self.lists.iter().find(|l| l.def.source == def.source && l.def.devices == def.devices).map(|l| l.def.id)
    }

    pub fn add(&mut self, mut def: ListDef) -> u64 {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        def.id = id;
        self.lists.push(ListState::new(def));
        id
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.lists.len();
        self.lists.retain(|l| l.def.id != id);
        self.lists.len() != before
    }

    pub fn ids(&self) -> Vec<u64> {
        self.lists.iter().map(|l| l.def.id).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ListState> {
        self.lists.iter()
    }

    /// What the fetcher must keep fresh.
    pub fn jobs(&self) -> Vec<FetchJob> {
        self.lists.iter().map(|l| FetchJob { id: l.def.id, source: l.def.source.clone(), updated: l.updated }).collect()
    }

    /// Takes what the fetcher says about list `id` at `time`; `others` is how many names the
    /// other lists hold (all lists together stay within [`MAX_NAMES`]). A failure keeps the
    /// previous copy. `false`: no such list (removed meanwhile).
    pub fn fetched(&mut self, id: u64, time: Timestamp, outcome: Result<Fetched, String>, others: usize) -> bool {
        let Some(l) = self.lists.iter_mut().find(|l| l.def.id == id) else { return false };
        match outcome {
            Ok(f) if others + f.names.len() > MAX_NAMES => {
                l.error = Some(format!(
                    "{} names would make more than {MAX_NAMES} in all lists; the previous copy stays",
                    f.names.len()
                ));
            }
            Ok(f) => {
                l.names = f.names;
                l.counts = ListCounts { file: source_text(&l.def.source).to_string(), ..f.counts };
                l.updated = Some(time);
                l.error = None;
            }
            Err(e) => l.error = Some(e),
        }
        true
    }

    /// The lists as the matcher applies them, in id order.
    pub fn match_lists(&self) -> impl Iterator<Item = MatchList> + '_ {
        self.lists.iter().map(|l| MatchList {
            names: l.names.clone(),
            devices: (!l.def.devices.is_empty()).then(|| l.def.devices.iter().map(|m| m.0).collect()),
            blocked: l.blocked.clone(),
        })
    }

    /// The entries of `list_blocklists`.
    pub fn list_json(&self) -> Vec<Value> {
        self.lists.iter().map(|l| entry_json(l, true)).collect()
    }

    /// `blocklists.json`'s text: the definitions with their last download's time and error.
    pub fn file_text(&self) -> String {
        let mut f = Map::new();
        f.insert("next_id".into(), self.next_id.into());
        f.insert("lists".into(), Value::Array(self.lists.iter().map(|l| entry_json(l, false)).collect()));
        Value::Object(f).to_string() + "\n"
    }

    /// Reads `blocklists.json`; a list that no longer parses is reported and left out. The
    /// names come from the cached copies ([`ListSources::load_cached`]).
    pub fn from_file_text(text: &str) -> Result<(ListSources, Vec<String>), String> {
        let f: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let next_id = f["next_id"].as_u64().ok_or("no next_id")?;
        let mut out = ListSources { lists: Vec::new(), next_id };
        let mut warnings = Vec::new();
        for j in f["lists"].as_array().ok_or("no lists")? {
            let Some(id) = j["id"].as_u64().filter(|id| !out.lists.iter().any(|l| l.def.id == *id)) else {
                warnings.push(format!("a blocklist without an id of its own: {j}"));
                continue;
            };
            let devices: Vec<&str> = j["devices"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            match parse_def(j["url"].as_str(), j["file"].as_str(), &devices, j["name"].as_str()) {
                Ok(mut def) => {
                    def.id = id;
                    out.next_id = out.next_id.max(id + 1);
                    let mut l = ListState::new(def);
                    l.updated = j["updated"].as_i64();
                    l.error = j["error"].as_str().map(str::to_string);
                    // In id order, as the file has them (no sort: its code costs binary size).
                    let at = out.lists.iter().position(|o| o.def.id > id).unwrap_or(out.lists.len());
                    out.lists.insert(at, l);
                }
                Err((field, e)) => warnings.push(format!("blocklist {id}: {field}: {e}")),
            }
        }
        Ok((out, warnings))
    }

    /// Loads each list's cached copy from `dir` (`<id>.list`, with the bounded reader; at most
    /// `budget` names in all); a missing copy is an empty list until its first download.
    pub fn load_cached(&mut self, dir: &Path, mut budget: usize) -> Vec<String> {
        let mut warnings = Vec::new();
        for l in &mut self.lists {
            let path = cache_file(dir, l.def.id);
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    warnings.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let mut set = NameSet::new();
            let reader = std::io::BufReader::with_capacity(64 << 10, f);
            let counts = blocklist::load_with(reader, source_text(&l.def.source), &mut set, &[], budget);
            if let Some(e) = &counts.error {
                warnings.push(format!("{}: {e}", path.display()));
            }
            budget = budget.saturating_sub(set.len());
            set.shrink_to_fit();
            l.names = Arc::new(set);
            l.counts = counts;
        }
        warnings
    }
}

/// The cached copy of list `id` in the lists' directory.
pub fn cache_file(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.list"))
}

/// A list as JSON: in `list_blocklists` (`listing`: with what it gave and blocked today) and in
/// `blocklists.json`. Built by hand, not with `json!` (its per-type code costs binary size).
fn entry_json(l: &ListState, listing: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), l.def.id.into());
    let (key, source) = match &l.def.source {
        Source::Url(u) => ("url", u.clone()),
        Source::File(f) => ("file", f.display().to_string()),
    };
    o.insert(key.into(), source.into());
    if !l.def.devices.is_empty() {
        o.insert("devices".into(), Value::Array(l.def.devices.iter().map(|m| m.to_string().into()).collect()));
    }
    if let Some(n) = &l.def.label {
        o.insert("name".into(), n.clone().into());
    }
    if let Some(t) = l.updated {
        o.insert("updated".into(), t.into());
    }
    if let Some(e) = &l.error {
        o.insert("error".into(), e.clone().into());
    }
    if listing {
        for (k, v) in [
            ("names", l.names.len()),
            ("skipped", l.counts.skipped),
            ("duplicates", l.counts.duplicates),
            ("blocked_today", l.blocked.get()),
        ] {
            o.insert(k.into(), v.into());
        }
    }
    Value::Object(o)
}

fn source_text(s: &Source) -> &str {
    match s {
        Source::Url(u) => u,
        Source::File(f) => f.to_str().unwrap_or(""),
    }
}

/// Everything the core holds of blocklists: the config's files (read at start), the household's
/// lists, the matcher's view of both, the counters of today's blocks and the fetcher's channel.
#[derive(Debug, Default)]
pub struct Blocklists {
    /// `blocklist_files`, in the config's order.
    pub config: Vec<(MatchList, ListCounts)>,
    pub sources: ListSources,
    /// `config` then `sources`, as the matcher applies them.
    pub matched: Arc<[MatchList]>,
    /// Every query blocked on the DNS verdict path today.
    pub blocked_today: BlockCounter,
    /// The local weekday the counters count (they restart when it changes: local midnight).
    pub day: Option<u8>,
    pub fetcher: Option<Arc<FetchQueue>>,
}

impl Blocklists {
    /// The config's lists (each file's names with what it gave).
    pub fn new(config: Vec<(Arc<NameSet>, ListCounts)>) -> Blocklists {
        let config = config
            .into_iter()
            .map(|(names, c)| (MatchList { names, devices: None, blocked: BlockCounter::default() }, c))
            .collect();
        let mut b = Blocklists { config, ..Default::default() };
        b.rebuild();
        b
    }

    /// Builds the matcher's view again after a list changed.
    pub fn rebuild(&mut self) {
        let lists: Vec<MatchList> =
            self.config.iter().map(|(m, _)| m.clone()).chain(self.sources.match_lists()).collect();
        self.matched = lists.into();
    }

    /// Names in force in all lists.
    pub fn names(&self) -> usize {
        self.matched.iter().map(|l| l.names.len()).sum()
    }

    /// Tells the fetcher every list and which to fetch now (nothing without a fetcher: tests,
    /// or the fetcher gone).
    pub fn tell_fetcher(&self, now: Vec<u64>) {
        if let Some(q) = &self.fetcher {
            q.push(FetchRequest { jobs: self.sources.jobs(), now });
        }
    }

    /// At local midnight (the weekday changed) today's counts start again from zero.
    pub fn new_day(&mut self, weekday: u8) {
        if self.day.is_some_and(|d| d != weekday) {
            self.blocked_today.reset();
            for l in self.matched.iter() {
                l.blocked.reset();
            }
        }
        self.day = Some(weekday);
    }

    /// `list_blocklists`.
    pub fn list_json(&self) -> Value {
        let mut lists: Vec<Value> = self
            .config
            .iter()
            .map(|(m, c)| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("blocked_today".into(), m.blocked.get().into());
                }
                v
            })
            .collect();
        lists.extend(self.sources.list_json());
        let mut o = Map::new();
        o.insert("names".into(), self.names().into());
        o.insert("blocked_today".into(), self.blocked_today.get().into());
        o.insert("lists".into(), Value::Array(lists));
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAC: &str = "02:00:00:00:00:01";

    #[test]
    fn urls_files_devices_and_labels_are_checked_naming_the_field() {
        let field = |r: Result<ListDef, (&'static str, String)>| r.unwrap_err().0;
        assert_eq!(field(parse_def(Some("ftp://x.example/l"), None, &[], None)), "url");
        assert_eq!(field(parse_def(Some("http://"), None, &[], None)), "url");
        assert_eq!(field(parse_def(Some("http:///list"), None, &[], None)), "url");
        assert_eq!(field(parse_def(Some("http://a b.example/"), None, &[], None)), "url");
        assert_eq!(field(parse_def(Some("http://x.example/a\nb"), None, &[], None)), "url");
        assert_eq!(field(parse_def(Some("http://-o/etc/passwd"), None, &[], None)), "url");
        assert_eq!(field(parse_def(Some(&format!("http://x/{}", "a".repeat(3000))), None, &[], None)), "url");
        assert_eq!(field(parse_def(None, None, &[], None)), "url");
        assert_eq!(field(parse_def(Some("http://x.example/"), Some("/l"), &[], None)), "url");
        assert_eq!(field(parse_def(None, Some("relative/list.txt"), &[], None)), "file");
        assert_eq!(field(parse_def(Some("https://x.example/l"), None, &["02:00:00:00:00"], None)), "devices");
        assert_eq!(field(parse_def(Some("https://x.example/l"), None, &["ff:ff:ff:ff:ff:ff"], None)), "devices");
        assert_eq!(field(parse_def(Some("https://x.example/l"), None, &[], Some("a\u{7}b"))), "name");
        let d = parse_def(Some(" https://user@[2001:db8::1]:8080/l?x=1 "), None, &[MAC, MAC], Some(" Kids ")).unwrap();
        assert_eq!(d.source, Source::Url("https://user@[2001:db8::1]:8080/l?x=1".into()));
        assert_eq!((d.devices.len(), d.label.as_deref()), (1, Some("Kids")));
        assert_eq!(
            parse_def(None, Some("/etc/hosts.block"), &[], None).unwrap().source,
            Source::File("/etc/hosts.block".into())
        );
    }

    fn fetched(names: &[&str]) -> Result<Fetched, String> {
        let names: NameSet = names.iter().map(|n| n.as_bytes().into()).collect();
        Ok(Fetched { names: Arc::new(names), counts: ListCounts { names: 1, skipped: 2, ..Default::default() } })
    }

    #[test]
    fn a_failed_refresh_keeps_the_previous_copy_and_reports_the_error() {
        let mut s = ListSources::default();
        let id = s.add(parse_def(Some("http://lists.example/ads.txt"), None, &[MAC], Some("ads")).unwrap());
        assert_eq!(id, 1);
        assert!(s.fetched(id, 100, fetched(&["ads.example"]), 0));
        assert!(s.fetched(id, 200, Err("curl: (22) The requested URL returned error: 404".into()), 0));
        let l = s.iter().next().unwrap();
        assert!(l.names.contains(&b"ads.example"[..]), "the old copy stays in force");
        assert_eq!((l.updated, l.error.as_deref().map(|e| e.contains("404"))), (Some(100), Some(true)));
        let j = &s.list_json()[0];
        assert_eq!((j["updated"].as_i64(), j["names"].as_u64(), j["skipped"].as_u64()), (Some(100), Some(1), Some(2)));
        assert_eq!(j["devices"], json!([MAC]));
        // Too many names in all: refused, the old copy stays.
        assert!(s.fetched(id, 300, fetched(&["a.example", "b.example"]), MAX_NAMES - 1));
        assert!(s.iter().next().unwrap().names.contains(&b"ads.example"[..]));
        // A good download clears the error.
        assert!(s.fetched(id, 400, fetched(&["new.example"]), 0));
        let l = s.iter().next().unwrap();
        assert!(l.error.is_none() && l.names.contains(&b"new.example"[..]) && !l.names.contains(&b"ads.example"[..]));
        assert!(!s.fetched(99, 400, fetched(&["x.example"]), 0), "a list removed meanwhile");
    }

    #[test]
    fn the_file_round_trips_ids_are_not_reused_and_cached_copies_load() {
        let mut s = ListSources::default();
        let a = s.add(parse_def(Some("http://a.example/l"), None, &[], None).unwrap());
        let b = s.add(parse_def(None, Some("/tmp/l.txt"), &[MAC], Some("kids")).unwrap());
        s.fetched(b, 50, Err("gone".into()), 0);
        assert!(s.remove(a) && !s.remove(a));
        let (mut back, warnings) = ListSources::from_file_text(&s.file_text()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(back, s);
        assert_eq!(back.add(parse_def(Some("http://c.example/l"), None, &[], None).unwrap()), 3, "ids are not reused");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(cache_file(dir.path(), b), "0.0.0.0 kids.example\n||more.example^\nbad line here\n").unwrap();
        assert!(back.load_cached(dir.path(), MAX_NAMES).is_empty());
        let l = back.iter().find(|l| l.def.id == b).unwrap();
        assert_eq!((l.names.len(), l.counts.skipped, l.error.as_deref()), (2, 1, Some("gone")));
        assert!(ListSources::from_file_text("[]").is_err());
    }

    #[test]
    fn counters_restart_at_local_midnight_and_the_listing_has_every_field() {
        let cfg: NameSet = ["cfg.example".as_bytes().into()].into_iter().collect();
        let mut b = Blocklists::new(vec![(
            Arc::new(cfg),
            ListCounts { file: "/etc/l".into(), names: 1, ..Default::default() },
        )]);
        b.sources.add(parse_def(Some("http://a.example/l"), None, &[], None).unwrap());
        b.rebuild();
        assert_eq!(b.matched.len(), 2);
        b.new_day(2);
        b.blocked_today.add();
        b.matched[0].blocked.add();
        b.matched[1].blocked.add();
        b.new_day(2);
        let j = b.list_json();
        assert_eq!((j["names"].as_u64(), j["blocked_today"].as_u64()), (Some(1), Some(1)));
        assert_eq!(
            (j["lists"][0]["file"].as_str(), j["lists"][0]["blocked_today"].as_u64()),
            (Some("/etc/l"), Some(1))
        );
        assert_eq!((j["lists"][1]["id"].as_u64(), j["lists"][1]["blocked_today"].as_u64()), (Some(1), Some(1)));
        assert_eq!(j["lists"][1]["url"], "http://a.example/l");
        assert!(j["lists"][1].get("updated").is_none() && j["lists"][1].get("devices").is_none());
        b.new_day(3);
        let j = b.list_json();
        assert_eq!((j["blocked_today"].as_u64(), j["lists"][1]["blocked_today"].as_u64()), (Some(0), Some(0)));
    }
}
