//! The tidy test: reads `spind/src` and fails, naming the file and the rule, when a file lacks
//! its opening `//!` doc comment or code breaks one of the invariants of
//! `docs/architecture.md`. No file is exempt (test modules have their doc comment too).
//!
//! The check works on the code with comments and string/char literals blanked out, so prose
//! and test data never trip it. Paths are resolved to the room they name: `crate::…`, grouped
//! imports (`use crate::{sources, …}`) and `super::` chains (relative to the file's module; an
//! inline `mod tests` is taken as its file).

use std::path::{Path, PathBuf};

/// One rule a file broke.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    file: String,
    rule: &'static str,
    detail: String,
}

const DOC: &str = "every file opens with a `//!` doc comment saying what it holds";
const MODEL_ALONE: &str =
    "model/ imports nothing from sources/, transports/, enforcer/ or daemon/ (it is the core; they use it)";
const NO_CORE_IN_TRANSPORTS: &str =
    "transports/ never name the Core: requests go to the core's channel as Input::Rpc (transports/rpc_link)";
const KERNEL_ACCESS: &str = concat!(
    "only sources/kernel, enforcer/ and transports/capture open kernel sockets (libc::socket, AF_NETLINK, \
     AF_PACKET, SOCK_RAW, getifaddrs, neli, socket2's Domain::PACKET) or run commands (std::process::",
    "Command, nft; and sources/fetch the blocklist download command)"
);
const CONFIG_NO_KERNEL: &str = "daemon/config reads text and asks no kernel: it does not import sources/";
const CACHE_IN_MODEL: &str = "nothing but the model names the NodeCache (only the core mutates it)";
const NO_64BIT_ATOMICS: &str =
    "no AtomicU64/AtomicI64: 32-bit MIPS (GL.iNet AR150) has no 64-bit atomics (AtomicUsize, or a Mutex)";
const ENFORCER_TAKES_POLICY: &str =
    "enforcer/ takes the Policy and decides nothing: from model/ it uses only model::policy and model::addr";

#[test]
fn the_source_tree_keeps_its_doc_comments_and_room_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 30, "found only {} files under {}", files.len(), src.display());
    let mut violations = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap();
        violations.extend(check_file(&rel, &text));
    }
    assert!(
        violations.is_empty(),
        "the source tree breaks its rules (docs/architecture.md, \"Invariants\"):\n{}",
        violations
            .iter()
            .map(|v| format!("  spind/src/{}: {} ({})", v.file, v.rule, v.detail))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The rules for one file, `rel` being its path under `spind/src`.
fn check_file(rel: &str, text: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut flag = |rule: &'static str, detail: String| out.push(Violation { file: rel.to_string(), rule, detail });
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if !first.starts_with("//!") {
        flag(DOC, format!("first line is {first:?}"));
    }
    let code = code_only(text);
    let module = module_path(rel);
    let room = module.first().map(String::as_str).unwrap_or("");
    let paths = crate_paths(&code, &module);

    if room == "model" {
        for p in paths.iter().filter(|p| ["sources", "transports", "enforcer", "daemon"].contains(&p[0].as_str())) {
            flag(MODEL_ALONE, format!("uses crate::{}", p.join("::")));
        }
    }
    if room == "transports" {
        if has_word(&code, "Core") {
            flag(NO_CORE_IN_TRANSPORTS, "names `Core`".into());
        }
        for p in paths.iter().filter(|p| p.len() > 1 && p[0] == "model" && p[1] == "core") {
            flag(NO_CORE_IN_TRANSPORTS, format!("uses crate::{}", p.join("::")));
        }
    }
    let kernel_allowed = rel.starts_with("sources/kernel/") || room == "enforcer" || rel == "transports/capture.rs";
    // The blocklist fetcher runs the router's download command, and nothing else of the list.
    let command_allowed = kernel_allowed || rel == "sources/fetch.rs";
    if !kernel_allowed {
        for needle in [
            "libc::socket",
            "AF_NETLINK",
            "AF_PACKET",
            "SOCK_RAW",
            "getifaddrs",
            // Spelt in two halves: the xtask tidy test reads this file too, for commands run
            // outside the runner.
            concat!("process::", "Command"),
            concat!("Command", "::new"),
            "neli::",
            "Domain::PACKET",
        ] {
            let is_command = needle.contains("Command");
            if code.contains(needle) && !(is_command && command_allowed) {
                flag(KERNEL_ACCESS, format!("uses `{needle}`"));
            }
        }
    }
    for atomic in ["AtomicU64", "AtomicI64"] {
        if has_word(&code, atomic) {
            flag(NO_64BIT_ATOMICS, format!("uses `{atomic}`"));
        }
    }
    if rel == "daemon/config.rs" {
        for p in paths.iter().filter(|p| p[0] == "sources") {
            flag(CONFIG_NO_KERNEL, format!("uses crate::{}", p.join("::")));
        }
    }
    if room != "model" && has_word(&code, "NodeCache") {
        flag(CACHE_IN_MODEL, "names `NodeCache`".into());
    }
    if room == "enforcer" {
        for p in paths.iter().filter(|p| p[0] == "model" && !(p.len() > 1 && (p[1] == "policy" || p[1] == "addr"))) {
            flag(ENFORCER_TAKES_POLICY, format!("uses crate::{}", p.join("::")));
        }
    }
    out
}

/// The module path of a file under `src`: `model/core/tests.rs` → `[model, core, tests]`,
/// `model/mod.rs` → `[model]`, `lib.rs` → `[]`.
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// Every path in `code` that starts at the crate root (`crate::…`, or `super::…` climbing to
/// it), as its segments under the crate root. A group (`crate::{a::b, c}`) gives one path per
/// member; `self` members are dropped.
fn crate_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let at_word_start = i == 0 || !is_ident(bytes[i - 1] as char) && bytes[i - 1] != b':';
        let rest = &code[i..];
        let base: Option<(Vec<String>, usize)> = if at_word_start && rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if at_word_start && rest.starts_with("super::") {
            let mut up = 0;
            let mut len = 0;
            while code[i + len..].starts_with("super::") {
                up += 1;
                len += "super::".len();
            }
            Some((module[..module.len().saturating_sub(up)].to_vec(), len))
        } else {
            None
        };
        let Some((prefix, len)) = base else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        for tail in path_tails(&code[i + len..]) {
            let mut p = prefix.clone();
            p.extend(tail);
            if !p.is_empty() {
                out.push(p);
            }
        }
        i += len;
    }
    out
}

/// The segments that follow a `crate::` (or `super::`): `a::b::C` → `[[a, b, C]]`,
/// `{a::b, c}` → `[[a, b], [c]]`.
fn path_tails(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut end = inner.len();
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = k;
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let mut members = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        let group = &inner[..end];
        for (k, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    members.push(&group[start..k]);
                    start = k + 1;
                }
                _ => {}
            }
        }
        members.push(&group[start..]);
        return members
            .into_iter()
            .flat_map(|m| path_tails(m.trim()))
            .filter(|p| p.first().is_some_and(|s| s != "self"))
            .collect();
    }
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        segs.push(rest[..len].to_string());
        rest = &rest[len..];
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with('{') => {
                return path_tails(r).into_iter().map(|t| segs.iter().cloned().chain(t).collect()).collect();
            }
            Some(r) => rest = r,
            None => break,
        }
    }
    if segs.is_empty() {
        Vec::new()
    } else {
        vec![segs]
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `code` as a whole identifier.
fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(k, _)| {
        let before = code[..k].chars().next_back();
        let after = code[k + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// `text` with comments and the contents of string and char literals replaced by spaces
/// (newlines kept), so only code is left to check.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|p| is_ident(*p))
            && {
                let mut k = i + if c == 'b' { 2 } else { 1 };
                while chars.get(k) == Some(&'#') {
                    k += 1;
                }
                chars.get(k) == Some(&'"')
            }
        {
            // A raw string: r"…", r#"…"#, br"…".
            let mut k = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[k] == '#' {
                hashes += 1;
                k += 1;
            }
            k += 1;
            while k < chars.len() {
                if chars[k] == '"' && (0..hashes).all(|h| chars.get(k + 1 + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            out.push_str("\"\"");
            for ch in &chars[i..k] {
                if *ch == '\n' {
                    out.push('\n');
                }
            }
            i = k;
        } else if c == '"' {
            let mut k = i + 1;
            while k < chars.len() && chars[k] != '"' {
                k += if chars[k] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            for ch in &chars[i..k.min(chars.len())] {
                if *ch == '\n' {
                    out.push('\n');
                }
            }
            i = k + 1;
        } else if c == '\''
            && (chars.get(i + 2) == Some(&'\'')
                || (next == Some('\\') && chars[i..].iter().skip(2).take(10).any(|&x| x == '\'')))
        {
            // A char literal ('x', '\n', '\u{..}'); a lone quote is a lifetime.
            let mut k = i + 1;
            while k < chars.len() && chars[k] != '\'' {
                k += if chars[k] == '\\' { 2 } else { 1 };
            }
            out.push_str("''");
            i = k + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

// The rules themselves must bite: each one against a file that breaks it.

#[test]
fn tidy_flags_a_file_without_its_doc_comment() {
    let v = check_file("model/stats.rs", "use std::fmt;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, DOC);
    assert!(check_file("model/stats.rs", "\n//! Counters.\nuse std::fmt;\n").is_empty());
}

#[test]
fn tidy_flags_a_64_bit_atomic_that_mips_lacks() {
    let v =
        check_file("transports/webhook.rs", "//! Hook.\nstatic N: std::sync::atomic::AtomicU64 = AtomicU64::new(0);\n");
    assert!(!v.is_empty() && v.iter().all(|x| x.rule == NO_64BIT_ATOMICS), "{v:?}");
    assert!(check_file(
        "transports/webhook.rs",
        "//! Hook.\n// not `AtomicU64`\nuse std::sync::atomic::AtomicUsize;\n"
    )
    .is_empty());
}

#[test]
fn tidy_flags_the_model_importing_another_room_in_any_spelling() {
    for code in [
        "use crate::sources::kernel::WanInterfaces;",
        "use crate::{daemon::config, model::addr};",
        "fn f() { crate::transports::rpc_link::ask(); }",
        "use crate::{enforcer};",
        "use super::super::enforcer::Nft;",
    ] {
        let v = check_file("model/core.rs", &format!("//! The core.\n{code}\n"));
        assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), [MODEL_ALONE], "{code}: {v:?}");
    }
    // Within the model, in comments and in strings, it is fine.
    let ok = "//! x\nuse crate::model::{addr::IpNet, nodes};\nuse super::persist;\n// crate::sources::kernel\nconst S: &str = \"crate::daemon\";\nconst R: &str = r#\"crate::daemon\"#;\n";
    assert!(check_file("model/core.rs", ok).is_empty(), "{:?}", check_file("model/core.rs", ok));
}

#[test]
fn tidy_flags_a_transport_naming_the_core() {
    let v = check_file("transports/http/mod.rs", "//! x\nfn f(c: &mut Core) {}\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, NO_CORE_IN_TRANSPORTS);
    let v = check_file("transports/mqtt/mod.rs", "//! x\nuse crate::model::core::CoreSettings;\n");
    assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), [NO_CORE_IN_TRANSPORTS]);
    assert!(check_file("transports/mqtt/mod.rs", "//! the Core\n/// the [`Core`]\nstruct CoreLink;\n").is_empty());
}

#[test]
fn tidy_flags_kernel_sockets_and_commands_outside_their_rooms() {
    for code in [
        "let fd = unsafe { libc::socket(libc::AF_NETLINK, 3, 0) };",
        concat!("std::process::", "Command", "::new(\"nft\").status();"),
        "unsafe { libc::getifaddrs(&mut p) };",
    ] {
        let file = format!("//! x\nfn f() {{ {code} }}\n");
        assert!(check_file("model/rpc.rs", &file).iter().any(|v| v.rule == KERNEL_ACCESS), "{code}");
        assert!(check_file("transports/http/mod.rs", &file).iter().any(|v| v.rule == KERNEL_ACCESS), "{code}");
        assert!(check_file("sources/kernel/netlink.rs", &file).is_empty(), "{code}");
        assert!(check_file("enforcer/nft.rs", &file).is_empty(), "{code}");
        assert!(check_file("transports/capture.rs", &file).is_empty(), "{code}");
    }
    // The blocklist fetcher may run its command, and open no kernel socket.
    let command = concat!("//! x\nfn f() { std::process::", "Command", "::new(\"curl\").status(); }\n");
    assert!(check_file("sources/fetch.rs", command).is_empty());
    let socket = "//! x\nfn f() { unsafe { libc::socket(libc::AF_NETLINK, 3, 0) }; }\n";
    assert!(check_file("sources/fetch.rs", socket).iter().any(|v| v.rule == KERNEL_ACCESS));
    assert!(check_file("sources/extsrc.rs", command).iter().any(|v| v.rule == KERNEL_ACCESS));
}

#[test]
fn tidy_flags_the_config_asking_the_kernel_and_the_cache_outside_the_model() {
    let v = check_file(
        "daemon/config.rs",
        "//! x\nconst F: fn(&str) -> bool = crate::sources::kernel::route::valid_ifname;\n",
    );
    assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), [CONFIG_NO_KERNEL]);
    assert!(check_file("daemon/mod.rs", "//! x\nuse crate::sources::kernel;\n").is_empty());
    let v = check_file("daemon/mod.rs", "//! x\nfn f(c: &mut NodeCache) {}\n");
    assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), [CACHE_IN_MODEL]);
    let v = check_file("enforcer/nft.rs", "//! x\nuse crate::model::{addr::IpNet, core::Core, policy::Policy};\n");
    assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), [ENFORCER_TAKES_POLICY]);
}
