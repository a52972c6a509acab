//! The small TOML subset the board files use, so xtask stays on the standard library:
//! `[table]` headers, `key = "string"`, `key = 'literal'`, integers, `true`/`false`, and arrays of
//! strings (which may span lines), with `#` comments. Anything else is an error with its line.
//!
//! (Kept to what `board-configs/*.toml` needs; the shared board struct may replace it.)

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Array(Vec<String>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array of strings",
        }
    }
}

/// One entry: its value and the line it was on (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub value: Value,
    pub line: usize,
}

/// Tables by name ("" is the top level), each a map of key → entry.
pub type Document = BTreeMap<String, BTreeMap<String, Entry>>;

pub fn parse(text: &str) -> Result<Document, String> {
    let mut doc = Document::new();
    doc.insert(String::new(), BTreeMap::new());
    let mut table = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = strip_comment(lines[i]).trim().to_string();
        i += 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .map(str::trim)
                .filter(|n| {
                    !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                })
                .ok_or_else(|| format!("line {line_no}: bad table header {line:?}"))?;
            if doc.contains_key(name) {
                return Err(format!("line {line_no}: table [{name}] defined twice"));
            }
            table = name.to_string();
            doc.insert(table.clone(), BTreeMap::new());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line_no}: expected `key = value`, got {line:?}"))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("line {line_no}: bad key {key:?}"));
        }
        let mut value = value.trim().to_string();
        // Arrays may continue over several lines until the closing bracket.
        if value.starts_with('[') {
            while !array_closed(&value) {
                let Some(next) = lines.get(i) else {
                    return Err(format!("line {line_no}: array for {key} is not closed"));
                };
                value.push(' ');
                value.push_str(strip_comment(next).trim());
                i += 1;
            }
        }
        let parsed = parse_value(&value).map_err(|e| format!("line {line_no}: {key}: {e}"))?;
        let t = doc.get_mut(&table).expect("table exists");
        if t.insert(
            key.to_string(),
            Entry {
                value: parsed,
                line: line_no,
            },
        )
        .is_some()
        {
            return Err(format!("line {line_no}: {key} given twice"));
        }
    }
    Ok(doc)
}

/// The line without a trailing `# comment` (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

fn array_closed(value: &str) -> bool {
    let mut quote: Option<char> = None;
    for c in value.chars() {
        match (quote, c) {
            (None, ']') => return true,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    false
}

fn parse_value(v: &str) -> Result<Value, String> {
    if v == "true" {
        return Ok(Value::Bool(true));
    }
    if v == "false" {
        return Ok(Value::Bool(false));
    }
    if v.starts_with('"') || v.starts_with('\'') {
        let (s, rest) = parse_string(v)?;
        if !rest.trim().is_empty() {
            return Err(format!("unexpected text after the string: {rest:?}"));
        }
        return Ok(Value::Str(s));
    }
    if let Some(inner) = v.strip_prefix('[') {
        let mut items = Vec::new();
        let mut rest = inner.trim_start();
        loop {
            if let Some(after) = rest.strip_prefix(']') {
                if !after.trim().is_empty() {
                    return Err(format!("unexpected text after the array: {after:?}"));
                }
                return Ok(Value::Array(items));
            }
            let (s, after) =
                parse_string(rest).map_err(|e| format!("array items must be strings: {e}"))?;
            items.push(s);
            rest = after.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
            } else if !rest.starts_with(']') {
                return Err(format!("expected ',' or ']' in the array, got {rest:?}"));
            }
        }
    }
    let digits = v.replace('_', "");
    digits
        .parse::<i64>()
        .map(Value::Int)
        .map_err(|_| format!("cannot read the value {v:?}"))
}

/// A quoted string at the start of `v`; returns it and the text after the closing quote.
fn parse_string(v: &str) -> Result<(String, &str), String> {
    let mut chars = v.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('"' | '\''))) => q,
        _ => return Err(format!("expected a quoted string, got {v:?}")),
    };
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if quote == '"' && escaped {
            out.push(match c {
                'n' => '\n',
                't' => '\t',
                '"' => '"',
                '\\' => '\\',
                other => return Err(format!("unsupported escape \\{other}")),
            });
            escaped = false;
        } else if quote == '"' && c == '\\' {
            escaped = true;
        } else if c == quote {
            return Ok((out, &v[i + 1..]));
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated string {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset() {
        let doc = parse(
            "# board\nname = \"x\" # trailing\nn = 1_000\nb = true\nlist = [\n  \"a\", # one\n  'b#c',\n]\n\n[openwrt]\nurl = \"https://h/#frag\"\n",
        )
        .unwrap();
        assert_eq!(doc[""]["name"].value, Value::Str("x".into()));
        assert_eq!(doc[""]["n"].value, Value::Int(1000));
        assert_eq!(doc[""]["b"].value, Value::Bool(true));
        assert_eq!(
            doc[""]["list"].value,
            Value::Array(vec!["a".into(), "b#c".into()])
        );
        assert_eq!(doc[""]["list"].line, 5);
        assert_eq!(
            doc["openwrt"]["url"].value,
            Value::Str("https://h/#frag".into())
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert!(parse("a = 1\nb\n").unwrap_err().starts_with("line 2:"));
        assert!(parse("a = 1\na = 2\n").unwrap_err().contains("given twice"));
        assert!(parse("a = [\"x\"\n").unwrap_err().contains("not closed"));
        assert!(parse("a = \"x\n").unwrap_err().contains("unterminated"));
        assert!(parse("[t]\n[t]\n").unwrap_err().contains("twice"));
        assert!(parse("a = [1]\n").unwrap_err().contains("strings"));
    }
}
