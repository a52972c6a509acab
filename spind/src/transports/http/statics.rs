//! Static files: the web UI built into the binary (`spind/ui/`), and optionally a directory on
//! disk (`spinweb_static_dir`, e.g. SPIN's original `static/` with the bubble app in
//! `spin_graph/`), which is looked at after the built-in files.
//!
//! Caching: every file is sent with `Cache-Control: no-cache` and a strong `ETag`, and an
//! `If-None-Match` that matches gets `304`. The UI's file names carry no content hash (there is
//! no build step), so a long `max-age` would keep old scripts in browsers after an upgrade;
//! revalidation costs one small request per file and the answer is usually a bodiless 304.
//!
//! Compression: text files of the built-in UI are gzip-compressed on first request and the result
//! is kept in memory; they are sent compressed (`Content-Encoding: gzip`, `Vary:
//! Accept-Encoding`) to clients that accept gzip. On disk, as SPIN did, `<path>.gz` is used for
//! `<path>` (sent as is to clients that accept gzip, decompressed for the others).
//!
//! Paths: the URL path is percent-decoded once and split on `/`; `.` and `..` segments, NUL,
//! backslashes and invalid UTF-8 are refused; files on disk must resolve (after symlinks) inside
//! the directory.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use rust_embed::Embed;

use super::Reply;

#[derive(Embed)]
#[folder = "ui/"]
struct Ui;

/// Files larger than this are not served from disk (they are read into memory).
const MAX_DISK_FILE: u64 = 64 << 20;
/// Smaller files are not worth compressing.
const MIN_GZIP: usize = 256;

/// A request as far as static files care.
pub struct StaticRequest<'a> {
    pub path: &'a str,
    pub accept_gzip: bool,
    pub if_none_match: Option<&'a str>,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup {
    Found(Reply),
    NotFound,
    /// A path that tries to leave the root, or cannot be a file name.
    Refused,
}

/// The static file server.
pub struct Statics {
    /// Canonical directory on disk, if any.
    dir: Option<PathBuf>,
    /// Compressed built-in files (`None`: not worth it).
    gz: Mutex<HashMap<String, Option<Arc<Vec<u8>>>>>,
}

/// A file of the built-in UI.
pub fn builtin(name: &str) -> Option<Vec<u8>> {
    Ui::get(name).map(|f| f.data.into_owned())
}

impl Statics {
    pub fn new(dir: Option<&Path>) -> anyhow::Result<Statics> {
        let dir = match dir {
            Some(d) => {
                let c = d.canonicalize().map_err(|e| anyhow::anyhow!("spinweb_static_dir {}: {e}", d.display()))?;
                if !c.is_dir() {
                    anyhow::bail!("spinweb_static_dir {} is not a directory", d.display());
                }
                Some(c)
            }
            None => None,
        };
        Ok(Statics { dir, gz: Mutex::new(HashMap::new()) })
    }

    pub fn lookup(&self, req: &StaticRequest) -> Lookup {
        let Some(segs) = sanitize(req.path) else {
            return Lookup::Refused;
        };
        let rel = segs.join("/");
        let is_dir = req.path.ends_with('/') || rel.is_empty();
        let mut names = Vec::new();
        if is_dir {
            names.push(if rel.is_empty() { "index.html".to_string() } else { format!("{rel}/index.html") });
        } else {
            names.push(rel.clone());
            names.push(format!("{rel}.html"));
        }
        for name in &names {
            if let Some(f) = Ui::get(name) {
                return Lookup::Found(self.builtin(name, f, req));
            }
        }
        if let Some(dir) = &self.dir {
            for name in &names {
                if let Some(r) = disk_file(dir, name, req) {
                    return Lookup::Found(r);
                }
            }
        }
        Lookup::NotFound
    }

    fn builtin(&self, name: &str, f: rust_embed::EmbeddedFile, req: &StaticRequest) -> Reply {
        let ctype = content_type(name);
        let tag = hex(&f.metadata.sha256_hash()[..8]);
        let gz = if req.accept_gzip && compressible(ctype) { self.gzipped(name, &f.data) } else { None };
        let (etag, body, encoded) = match gz {
            Some(z) => (format!("\"{tag}-gz\""), z.as_ref().clone(), true),
            None => (format!("\"{tag}\""), f.data.into_owned(), false),
        };
        finish(ctype, etag, body, encoded, compressible(ctype), req)
    }

    fn gzipped(&self, name: &str, data: &[u8]) -> Option<Arc<Vec<u8>>> {
        if let Some(v) = self.gz.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return v.clone();
        }
        let z = (data.len() >= MIN_GZIP).then(|| gzip(data)).filter(|z| z.len() < data.len()).map(Arc::new);
        self.gz.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), z.clone());
        z
    }
}

/// Builds the reply (or a 304) with the caching headers.
fn finish(ctype: &'static str, etag: String, body: Vec<u8>, encoded: bool, varies: bool, req: &StaticRequest) -> Reply {
    let mut r = if req.if_none_match.is_some_and(|v| etag_matches(v, &etag)) {
        Reply::new(304, ctype, Vec::new())
    } else {
        Reply::new(200, ctype, body)
    };
    r = r.with_header("Cache-Control", "no-cache").with_header("ETag", etag);
    if encoded {
        r = r.with_header("Content-Encoding", "gzip");
    }
    if varies {
        r = r.with_header("Vary", "Accept-Encoding");
    }
    r
}

pub(crate) fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// Looks for `name` (then `name.gz`) under the canonical `dir`.
fn disk_file(dir: &Path, name: &str, req: &StaticRequest) -> Option<Reply> {
    let ctype = content_type(name);
    let plain = inside(dir, name);
    let packed = inside(dir, &format!("{name}.gz"));
    // A precompressed copy is preferred when the client takes gzip; `.gz` alone (SPIN's vendor
    // scripts) is decompressed for clients that do not.
    let (path, encoded) = match (plain, packed) {
        (_, Some(gz)) if req.accept_gzip => (gz, true),
        (Some(p), _) => (p, false),
        (None, Some(gz)) => (gz, false),
        (None, None) => return None,
    };
    let meta = std::fs::metadata(&path).ok()?;
    if meta.len() > MAX_DISK_FILE {
        log::warn!("not serving {}: larger than {MAX_DISK_FILE} bytes", path.display());
        return None;
    }
    let mut data = std::fs::read(&path).ok()?;
    let is_gz = path.extension().is_some_and(|e| e == "gz") && !name.ends_with(".gz");
    if is_gz && !encoded {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&data[..]).take(MAX_DISK_FILE).read_to_end(&mut out).is_err() {
            log::warn!("{} is not valid gzip", path.display());
            return None;
        }
        data = out;
    }
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let etag = format!(
        "\"{:x}-{:x}{}\"",
        meta.len(),
        mtime,
        if encoded {
            "-gz"
        } else if is_gz {
            "-gunzip"
        } else {
            ""
        }
    );
    let varies = is_gz || compressible(ctype);
    Some(finish(ctype, etag, data, encoded, varies, req))
}

/// `dir/name` if it is a regular file whose real path is inside `dir`.
fn inside(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut p = dir.to_path_buf();
    for seg in name.split('/') {
        p.push(seg);
    }
    let real = p.canonicalize().ok()?;
    (real.starts_with(dir) && real.is_file()).then_some(real)
}

/// The path's segments after percent-decoding once; `None` if it is not a safe relative path.
pub fn sanitize(path: &str) -> Option<Vec<String>> {
    if !path.starts_with('/') {
        return None;
    }
    let bytes = percent_decode(path)?;
    let text = String::from_utf8(bytes).ok()?;
    if text.contains(['\0', '\\']) {
        return None;
    }
    let mut segs = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" => continue,
            "." | ".." => return None,
            s => segs.push(s.to_string()),
        }
    }
    Some(segs)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Content type by extension (a `.gz` served for another name takes that name's type).
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "pcap" => "application/vnd.tcpdump.pcap",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

fn compressible(ctype: &str) -> bool {
    ctype.starts_with("text/")
        || ctype.starts_with("application/json")
        || ctype.starts_with("application/manifest")
        || ctype == "image/svg+xml"
        || ctype == "image/x-icon"
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_refuses_escapes() {
        for bad in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2E%2fetc",
            "/a%2f..%2f..%2fb",
            "/a\\..\\b",
            "/a%5c..",
            "/a%00b",
            "/%zz",
            "/%2",
            "x/y",
            "/./a",
            "/%c0%ae%c0%ae/",
        ] {
            assert_eq!(sanitize(bad), None, "{bad}");
        }
        assert_eq!(sanitize("/a//b/").unwrap(), ["a", "b"]);
        assert_eq!(sanitize("/sp%20ace").unwrap(), ["sp ace"]);
        assert_eq!(sanitize("/%252e%252e").unwrap(), ["%2e%2e"]);
        assert!(sanitize("/").unwrap().is_empty());
    }

    #[test]
    fn disk_lookup_stays_inside() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(top.path().join("secret.txt"), "secret").unwrap();
        std::fs::write(root.join("sub/a.js"), "var a = 1;").unwrap();
        std::fs::write(root.join("sub/index.html"), "<p>idx</p>").unwrap();
        std::fs::write(root.join("only.js.gz"), gzip(b"var gz = 1;")).unwrap();
        std::os::unix::fs::symlink(top.path().join("secret.txt"), root.join("link.txt")).unwrap();
        let s = Statics::new(Some(&root)).unwrap();
        let get = |path: &str, gz: bool| s.lookup(&StaticRequest { path, accept_gzip: gz, if_none_match: None });
        match get("/sub/a.js", false) {
            Lookup::Found(r) => {
                assert_eq!(r.body, b"var a = 1;");
                assert_eq!(r.content_type, "text/javascript; charset=utf-8");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(get("/sub/", false), Lookup::Found(r) if r.body == b"<p>idx</p>"));
        match get("/only.js", true) {
            Lookup::Found(r) => {
                assert!(r.headers.iter().any(|(k, v)| *k == "Content-Encoding" && v == "gzip"));
                assert_eq!(r.content_type, "text/javascript; charset=utf-8");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(get("/only.js", false), Lookup::Found(r) if r.body == b"var gz = 1;"));
        assert!(matches!(get("/link.txt", false), Lookup::NotFound));
        assert!(matches!(get("/../secret.txt", false), Lookup::Refused));
        assert!(matches!(get("/%2e%2e/secret.txt", false), Lookup::Refused));
        assert!(matches!(get("/nope", false), Lookup::NotFound));
    }

    #[test]
    fn builtin_index_and_etag() {
        let s = Statics::new(None).unwrap();
        let Lookup::Found(r) = s.lookup(&StaticRequest { path: "/", accept_gzip: false, if_none_match: None }) else {
            panic!("no built-in index.html");
        };
        assert_eq!(r.status, 200);
        let etag = r.headers.iter().find(|(k, _)| *k == "ETag").unwrap().1.clone();
        let Lookup::Found(r) =
            s.lookup(&StaticRequest { path: "/index.html", accept_gzip: false, if_none_match: Some(&etag) })
        else {
            panic!()
        };
        assert_eq!((r.status, r.body.len()), (304, 0));
    }
}
