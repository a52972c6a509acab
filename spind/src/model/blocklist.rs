//! Blocklists (issue 13): files of names blocked for every device, in hosts format
//! (`0.0.0.0 name ...`), adblock format (`||name^`) or one name a line, listed by the
//! `blocklist_files` setting and read once at start. Their names go into one [`NameSet`] that
//! the [`NameMatcher`](crate::model::policy::NameMatcher) shares (an `Arc`, never copied when
//! the rules are compiled again every second), with what each file gave: names loaded, lines
//! skipped (not a rule this reader takes: bad names, non-ASCII names, adblock rules with
//! options or exceptions, lines over [`MAX_LINE`] bytes, text that is not UTF-8), duplicates.
//!
//! Bounded: a line is looked at only up to [`MAX_LINE`] bytes (a longer one is skipped without
//! being kept), at most [`MAX_NAMES`] names are loaded in all, and a file is read a line at a
//! time.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::model::namerules::normalise_name;

/// Longest line read (a hosts line with a few names is far shorter).
pub const MAX_LINE: usize = 4096;
/// Most names loaded from all lists together (about 60 MB of memory at most).
pub const MAX_NAMES: usize = 1_000_000;

/// Names blocked by the lists, lowercase without the trailing dot.
pub type NameSet = HashSet<Box<[u8]>>;

/// What one file gave.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListCounts {
    pub file: String,
    /// Names added (each name once over all files).
    pub names: usize,
    /// Lines that are not a rule this reader takes.
    pub skipped: usize,
    /// Names already loaded (from this file or an earlier one).
    pub duplicates: usize,
    /// Why the file could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a line says.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    /// Empty or a comment.
    Nothing,
    Names(Vec<&'a str>),
    Skipped,
}

/// One line of a list (without its line break).
fn parse_line(line: &str) -> Line<'_> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with('!') || (t.starts_with('[') && t.ends_with(']')) {
        return Line::Nothing;
    }
    // Adblock: `||name^`, nothing after it (an option such as `$third-party` narrows the rule,
    // which a name block cannot); `@@` exceptions are not blocks.
    if let Some(rest) = t.strip_prefix("||") {
        return match rest.strip_suffix('^') {
            Some(name) if !name.contains(['*', '/', '^', '$', '|']) => Line::Names(vec![name]),
            _ => Line::Skipped,
        };
    }
    // Hosts: an address, then names, then maybe a comment.
    let t = t.split('#').next().unwrap_or("").trim();
    let mut fields = t.split_whitespace();
    let first = fields.next().unwrap_or("");
    if first.parse::<std::net::IpAddr>().is_ok() {
        let names: Vec<&str> = fields.filter(|n| !LOCAL_NAMES.contains(n)).collect();
        // A line that only names the host itself (`127.0.0.1 localhost`) says nothing.
        return if names.is_empty() { Line::Nothing } else { Line::Names(names) };
    }
    // One name a line.
    match fields.next() {
        None => Line::Names(vec![first]),
        Some(_) => Line::Skipped,
    }
}

/// Names of the host itself in hosts files, never blocked.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Reads one list from `reader` into `set`.
pub fn load(reader: impl BufRead, file: &str, set: &mut NameSet) -> ListCounts {
    load_with(reader, file, set, &[], MAX_NAMES)
}

/// [`load`], where a name already in one of `earlier` is a duplicate too and at most `budget`
/// names go into `set` (what [`MAX_NAMES`] leaves after the other lists).
pub fn load_with(
    reader: impl BufRead,
    file: &str,
    set: &mut NameSet,
    earlier: &[&NameSet],
    budget: usize,
) -> ListCounts {
    let mut c = ListCounts { file: file.to_string(), ..Default::default() };
    let mut reader = reader;
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        // At most MAX_LINE + 1 bytes of a line are kept; the rest is read and dropped.
        let mut limited = std::io::Read::take(std::io::Read::by_ref(&mut reader), MAX_LINE as u64 + 1);
        match limited.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                c.error = Some(e.to_string());
                break;
            }
        }
        if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            c.skipped += 1;
            if let Err(e) = skip_line(&mut reader) {
                c.error = Some(e.to_string());
                break;
            }
            continue;
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            c.skipped += 1;
            continue;
        };
        match parse_line(line) {
            Line::Nothing => {}
            Line::Skipped => c.skipped += 1,
            Line::Names(names) => {
                for n in names {
                    match normalise_name(n) {
                        Err(_) => c.skipped += 1,
                        Ok(n) if earlier.iter().any(|e| e.contains(n.as_bytes())) => c.duplicates += 1,
                        Ok(_) if set.len() >= budget => c.skipped += 1,
                        Ok(n) => {
                            if set.insert(n.into_bytes().into_boxed_slice()) {
                                c.names += 1;
                            } else {
                                c.duplicates += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    c
}

/// Reads to the end of the current line, keeping nothing.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// Reads every file of the `blocklist_files` setting (comma-separated paths), each into its own
/// set (so that what each blocks is counted) holding only names no earlier file had, with at
/// most [`MAX_NAMES`] in all.
pub fn load_files(setting: &str) -> Vec<(NameSet, ListCounts)> {
    let mut out: Vec<(NameSet, ListCounts)> = Vec::new();
    for path in setting.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut set = NameSet::new();
        let counts = match std::fs::File::open(Path::new(path)) {
            Ok(f) => {
                let earlier: Vec<&NameSet> = out.iter().map(|(s, _)| s).collect();
                let budget = MAX_NAMES.saturating_sub(earlier.iter().map(|s| s.len()).sum());
                load_with(std::io::BufReader::with_capacity(64 << 10, f), path, &mut set, &earlier, budget)
            }
            Err(e) => ListCounts { file: path.to_string(), error: Some(e.to_string()), ..Default::default() },
        };
        set.shrink_to_fit();
        out.push((set, counts));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &[u8]) -> (NameSet, ListCounts) {
        let mut set = NameSet::new();
        let c = load(text, "t", &mut set);
        (set, c)
    }

    fn has(set: &NameSet, n: &str) -> bool {
        set.contains(n.as_bytes())
    }

    #[test]
    fn hosts_adblock_and_plain_lines_with_comments() {
        let text = b"# a hosts file\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n\
            0.0.0.0 ads.example tracker.example # two names\n127.0.0.1\tTAB.Example.\n\
            :: v6.example\n[Adblock Plus 2.0]\n! comment\n||ad.test^\n||opts.test^$third-party\n\
            @@||exception.test^\n||wild*.test^\nplain.test\n\n   \n";
        let (set, c) = load_text(text);
        for n in ["ads.example", "tracker.example", "tab.example", "v6.example", "ad.test", "plain.test"] {
            assert!(has(&set, n), "{n}");
        }
        assert_eq!((c.names, c.skipped, c.duplicates), (6, 3, 0), "{c:?}");
        assert!(!has(&set, "localhost") && !has(&set, "opts.test") && !has(&set, "exception.test"));
    }

    #[test]
    fn garbage_idn_and_duplicates_are_counted_not_loaded() {
        let text = "0.0.0.0 bücher.example\n0.0.0.0 xn--bcher-kva.example\nnot a name at all\n\
            0.0.0.0 a..b\n||dup.test^\n0.0.0.0 dup.test\nDUP.test\n\u{0}\u{1}\u{2}\n"
            .as_bytes()
            .iter()
            .copied()
            .chain([0xff, 0xfe, b'\n'])
            .collect::<Vec<u8>>();
        let (set, c) = load_text(&text);
        assert!(has(&set, "xn--bcher-kva.example"), "punycode is a name");
        assert!(has(&set, "dup.test"));
        assert_eq!(set.len(), 2);
        // bücher (not punycode), "not a name at all", a..b, the control characters, the bytes
        // that are not UTF-8.
        assert_eq!((c.names, c.skipped, c.duplicates), (2, 5, 2), "{c:?}");
    }

    #[test]
    fn very_long_lines_are_skipped_without_being_kept() {
        let mut text = Vec::new();
        text.extend_from_slice(b"first.test\n");
        text.extend(std::iter::repeat_n(b'a', 3 * MAX_LINE));
        text.extend_from_slice(b" tail.test\nafter.test\n");
        text.extend(std::iter::repeat_n(b'x', MAX_LINE + 10)); // no line break at the end
        let (set, c) = load_text(&text);
        assert!(has(&set, "first.test") && has(&set, "after.test") && !has(&set, "tail.test"));
        assert_eq!((c.names, c.skipped), (2, 2), "{c:?}");
    }

    #[test]
    fn ten_megabytes_of_junk_are_counted_and_leave_nothing() {
        // Deterministic junk: bytes of a simple generator, lines of every length.
        let mut x: u32 = 12345;
        let junk: Vec<u8> = (0..10 << 20)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let b = (x >> 16) as u8;
                if b.is_multiple_of(61) {
                    b'\n'
                } else if b.is_ascii_alphanumeric() {
                    b'#' // never a name: a junk line is a comment or skipped
                } else {
                    b | 0x80
                }
            })
            .collect();
        let (set, c) = load_text(&junk);
        assert!(set.is_empty());
        assert!(c.skipped > 10_000, "{c:?}");
        assert!(c.error.is_none());
    }

    #[test]
    fn a_hundred_thousand_names_load_and_the_total_is_bounded() {
        let text: String = (0..100_000).map(|i| format!("0.0.0.0 host{i}.ads{}.example\n", i % 97)).collect();
        let (set, c) = load_text(text.as_bytes());
        assert_eq!((set.len(), c.names, c.skipped), (100_000, 100_000, 0));
        let mut full: NameSet = (0..MAX_NAMES).map(|i| format!("n{i}").into_bytes().into_boxed_slice()).collect();
        let c = load(&b"one.more\n"[..], "t", &mut full);
        assert_eq!((c.names, c.skipped, full.len()), (0, 1, MAX_NAMES));
    }

    #[test]
    fn missing_files_are_reported_and_the_rest_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "||a.test^\n").unwrap();
        let setting = format!("{}, {}/missing.txt,", a.display(), dir.path().display());
        let loaded = load_files(&setting);
        assert_eq!(loaded.len(), 2);
        assert_eq!((loaded[0].0.len(), loaded[0].1.names), (1, 1));
        assert!(loaded[1].1.error.is_some() && loaded[1].0.is_empty());
    }

    #[test]
    fn a_name_of_an_earlier_file_is_a_duplicate_and_the_total_is_bounded_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
        std::fs::write(&a, "||a.test^\nboth.test\n").unwrap();
        std::fs::write(&b, "0.0.0.0 both.test b.test\n").unwrap();
        let loaded = load_files(&format!("{},{}", a.display(), b.display()));
        assert_eq!((loaded[0].1.names, loaded[1].1.names, loaded[1].1.duplicates), (2, 1, 1));
        assert!(loaded[1].0.contains(&b"b.test"[..]) && !loaded[1].0.contains(&b"both.test"[..]));
        let mut set = NameSet::new();
        let c = load_with(&b"x.test\ny.test\n"[..], "t", &mut set, &[&loaded[0].0], 1);
        assert_eq!((c.names, c.skipped, set.len()), (1, 1, 1), "the budget left by the other lists");
    }
}
