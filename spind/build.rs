//! Build step: the web UI (`ui/`) gzip-compressed once, here, into `$OUT_DIR/ui/`, which
//! rust-embed embeds (`transports/http/statics.rs`). Text files that shrink are stored as
//! `<name>.gz` only (browsers get them as they are; the rare client without gzip gets them
//! decompressed), everything else as it is: the binary carries ~25 KB of UI instead of ~85 KB and
//! no gzip encoder.
//!
//! And the vendor table (issue 14): the IEEE registry of the build host (`SPIN_OUI_TXT`, default
//! ieee-data's `/usr/share/ieee-data/oui.txt`) turned into the `SPINOUI1` table
//! (`build/oui_table.rs`) and gzip-compressed into `$OUT_DIR/oui.bin.gz` (~240 KB), which
//! `model::identity::OuiTable::builtin` embeds. Without the registry the table is empty (devices
//! show no vendor) and the build says so.

use std::io::Write;
use std::path::Path;

#[path = "build/oui_table.rs"]
mod oui_table;

/// Extensions of the files worth compressing (text).
const TEXT: [&str; 6] = ["html", "js", "css", "svg", "json", "txt"];

fn main() {
    println!("cargo:rerun-if-changed=ui");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("ui");
    let _ = std::fs::remove_dir_all(&out);
    copy(Path::new("ui"), &out);
    vendor_table(Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")));
}

fn vendor_table(out_dir: &Path) {
    println!("cargo:rerun-if-changed=build/oui_table.rs");
    println!("cargo:rerun-if-env-changed=SPIN_OUI_TXT");
    let src = std::env::var("SPIN_OUI_TXT").unwrap_or_else(|_| oui_table::IEEE_OUI_TXT.into());
    println!("cargo:rerun-if-changed={src}");
    let table = match std::fs::read(&src) {
        Ok(raw) => oui_table::generate(&String::from_utf8_lossy(&raw)).unwrap_or_else(|e| panic!("{src}: {e}")),
        Err(e) => {
            println!("cargo:warning=no vendor table in spind: {src}: {e} (apt-get install ieee-data)");
            Vec::new()
        }
    };
    let gz = if table.is_empty() { Vec::new() } else { gzip(&table) };
    std::fs::write(out_dir.join("oui.bin.gz"), gz).expect("oui.bin.gz");
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let mut entries: Vec<_> = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).collect();
    entries.sort_by_key(|e| e.as_ref().map(|e| e.file_name()).ok());
    for entry in entries {
        let entry = entry.expect("ui entry");
        let (path, name) = (entry.path(), entry.file_name());
        if path.is_dir() {
            copy(&path, &to.join(&name));
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = path.extension().and_then(|e| e.to_str()).is_some_and(|e| TEXT.contains(&e));
        let gz = text.then(|| gzip(&data)).filter(|z| z.len() < data.len());
        match gz {
            Some(z) => std::fs::write(to.join(format!("{}.gz", name.to_string_lossy())), z),
            None => std::fs::write(to.join(&name), &data),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    }
}

/// Deterministic gzip (no file name, modification time 0).
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}
