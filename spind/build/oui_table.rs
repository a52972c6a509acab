//! The vendor table (issue 14): the IEEE MA-L registry (Debian's `ieee-data`,
//! `/usr/share/ieee-data/oui.txt`) as a compact, sorted table (`SPINOUI1`, the format spind's
//! `model::identity` documents and checks). Vendor names are shortened (legal and generic
//! suffixes, parenthesised parts, at most [`NAME_MAX`] bytes at a word boundary) and stored once
//! each, so the whole registry is under 400 KB (about 240 KB gzip-compressed). Shared, std only:
//! spind's `build.rs` embeds it (`#[path]`), and `cargo xtask oui IN OUT` (xtask's `imagebuild::oui`)
//! writes one as a file for `oui_file`.

use std::collections::{BTreeMap, HashMap};

/// Where ieee-data installs the registry.
pub const IEEE_OUI_TXT: &str = "/usr/share/ieee-data/oui.txt";
/// A vendor name is cut to this many bytes.
pub const NAME_MAX: usize = 20;

/// Trailing words that say what kind of legal entity a vendor is, or nothing about who it is.
const DROP_WORDS: &[&str] = &[
    "co",
    "ltd",
    "inc",
    "corp",
    "corporation",
    "llc",
    "gmbh",
    "limited",
    "sa",
    "ag",
    "bv",
    "b.v",
    "nv",
    "n.v",
    "company",
    "technologies",
    "technology",
    "tech",
    "electronics",
    "electronic",
    "communication",
    "communications",
    "pte",
    "pty",
    "srl",
    "s.r.l",
    "spa",
    "s.p.a",
    "s.a",
    "ab",
    "oy",
    "as",
    "kg",
    "plc",
    "sas",
    "sdn",
    "bhd",
    "intl",
    "international",
    "industrial",
    "group",
    "holdings",
    "trading",
    "systems",
    "co.ltd",
    "co.,ltd",
];

/// The shortened form of a registry name ("Samsung Electronics Co.,LTD" -> "Samsung").
pub fn short_name(name: &str) -> String {
    let mut no_parens = String::with_capacity(name.len());
    let mut depth = 0u32;
    for c in name.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => no_parens.push(if c == ',' { ' ' } else { c }),
            _ => {}
        }
    }
    let mut words: Vec<&str> = no_parens.split_whitespace().collect();
    while words.len() > 1 && DROP_WORDS.contains(&words[words.len() - 1].trim_matches('.').to_lowercase().as_str()) {
        words.pop();
    }
    let full = words.join(" ");
    let full = full.trim_matches(|c: char| c == '.' || c == '-' || c == ' ');
    if full.len() <= NAME_MAX {
        return full.to_string();
    }
    let mut cut = NAME_MAX;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &full[..cut];
    // At a word boundary when there is one, so no name ends in half a word.
    match head.rfind(' ') {
        Some(i) if i > 0 => head[..i].trim_end().to_string(),
        _ => head.to_string(),
    }
}

/// The `XX-XX-XX   (hex)   Name` lines of oui.txt as (OUI, name); other lines are skipped.
pub fn parse_oui_txt(text: &str) -> BTreeMap<[u8; 3], String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((prefix, rest)) = line.split_once("(hex)") else { continue };
        let hex: Vec<&str> = prefix.trim().split('-').collect();
        let [a, b, c] = hex[..] else { continue };
        let bytes = [a, b, c].map(|h| if h.len() == 2 { u8::from_str_radix(h, 16).ok() } else { None });
        let [Some(a), Some(b), Some(c)] = bytes else { continue };
        let name = short_name(rest.trim());
        if !name.is_empty() {
            // The first entry of an OUI wins (the registry lists each once).
            out.entry([a, b, c]).or_insert(name);
        }
    }
    out
}

/// The vendor file of an oui.txt text.
pub fn generate(oui_txt: &str) -> Result<Vec<u8>, String> {
    let entries = parse_oui_txt(oui_txt);
    if entries.is_empty() {
        return Err("no `XX-XX-XX (hex) Name` lines: not the IEEE registry's oui.txt".into());
    }
    let mut index: HashMap<&str, u16> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut table = Vec::with_capacity(entries.len() * 5);
    for (oui, name) in &entries {
        let i = match index.get(name.as_str()) {
            Some(i) => *i,
            None => {
                let i = u16::try_from(names.len()).map_err(|_| "more than 65,536 distinct vendor names")?;
                index.insert(name, i);
                names.push(name);
                i
            }
        };
        table.extend(oui);
        table.extend(i.to_le_bytes());
    }
    let mut out = b"SPINOUI1".to_vec();
    let count = |n: usize| u32::try_from(n).map_err(|_| "more than 2^32 entries".to_string());
    out.extend(count(entries.len())?.to_le_bytes());
    out.extend(count(names.len())?.to_le_bytes());
    out.extend(table);
    for n in names {
        out.push(u8::try_from(n.len()).map_err(|_| "a name longer than 255 bytes")?);
        out.extend(n.as_bytes());
    }
    Ok(out)
}
