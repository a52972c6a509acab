//! OpenWrt `.ipk` packages (opkg, OpenWrt <= 24.10): a gzip'd tar holding, in this order,
//! `./debian-binary` ("2.0\n"), `./data.tar.gz` (the files, rooted at `./`) and
//! `./control.tar.gz` (`./control`, optional `./conffiles`, `./postinst`, `./prerm`), as
//! OpenWrt's `ipkg-build` writes them. Archives are made with GNU tar and gzip, reproducibly:
//! sorted names, owner root, fixed mtimes, no gzip name or timestamp.

use anyhow::{anyhow, Result};
use runner::cmd;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::stage::reset_dir;

/// Control fields in the order they are written.
pub type Control = Vec<(&'static str, String)>;

pub fn render_control(fields: &Control) -> String {
    fields.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

/// Installed-Size: the bytes of the regular files under `dir`.
pub fn installed_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))? {
        let entry = entry?;
        let meta = std::fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            total += installed_size(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// GNU tar options for a reproducible archive.
fn tar_common(epoch: u64) -> Vec<String> {
    vec![
        "--format=gnu".into(),
        "--numeric-owner".into(),
        "--owner=0".into(),
        "--group=0".into(),
        format!("--mtime=@{epoch}"),
        "--use-compress-program=gzip -9n".into(),
    ]
}

/// Builds `out` from `data_dir` (the package's files) and `control_dir` (`control` and the
/// maintainer scripts, already written). `work` is a scratch directory.
pub fn build(data_dir: &Path, control_dir: &Path, work: &Path, out: &Path, epoch: u64) -> Result<()> {
    reset_dir(work)?;
    std::fs::write(work.join("debian-binary"), "2.0\n")?;
    let sh = crate::paths::shell()?;
    let common = &tar_common(epoch);
    for (dir, name) in [(data_dir, "data.tar.gz"), (control_dir, "control.tar.gz")] {
        let archive = work.join(name);
        cmd!(sh, "tar {common...} --sort=name -C {dir} -cf {archive} .").read()?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    cmd!(sh, "tar {common...} -C {work} -cf {out} ./debian-binary ./data.tar.gz ./control.tar.gz").read()?;
    Ok(())
}

/// What an `.ipk` holds, read back with tar (for tests and the post-build check).
#[derive(Debug)]
pub struct IpkInfo {
    /// Members of the outer archive, in order.
    pub outer: Vec<String>,
    pub debian_binary: String,
    /// The control file's text and its fields.
    pub control_text: String,
    pub control: BTreeMap<String, String>,
    /// Members of control.tar.gz and data.tar.gz (`./path`, directories end in `/`).
    pub control_members: Vec<String>,
    pub data_members: Vec<String>,
    /// Where the archives were unpacked: `control/` and `data/` below it.
    pub unpacked: PathBuf,
}

impl IpkInfo {
    pub fn data_path(&self, path: &str) -> PathBuf {
        self.unpacked.join("data").join(path.trim_start_matches('/'))
    }
    pub fn control_path(&self, name: &str) -> PathBuf {
        self.unpacked.join("control").join(name)
    }
}

pub fn inspect(ipk: &Path, scratch: &Path) -> Result<IpkInfo> {
    reset_dir(scratch)?;
    let sh = crate::paths::shell()?;
    let list = |archive: &Path| -> Result<Vec<String>> {
        Ok(cmd!(sh, "tar -tzf {archive}").read()?.lines().map(str::to_string).collect())
    };
    let outer = list(ipk)?;
    let outer_dir = scratch.join("outer");
    std::fs::create_dir_all(&outer_dir)?;
    cmd!(sh, "tar -xzf {ipk} -C {outer_dir}").read()?;
    let debian_binary = std::fs::read_to_string(outer_dir.join("debian-binary")).unwrap_or_default();
    let mut members = BTreeMap::new();
    for (name, sub) in [("control.tar.gz", "control"), ("data.tar.gz", "data")] {
        let archive = outer_dir.join(name);
        if !archive.exists() {
            return Err(anyhow!("{}: no ./{name}", ipk.display()));
        }
        members.insert(sub, list(&archive)?);
        let dir = scratch.join(sub);
        std::fs::create_dir_all(&dir)?;
        cmd!(sh, "tar --no-same-owner -p -xzf {archive} -C {dir}").read()?;
    }
    let control_text = std::fs::read_to_string(scratch.join("control/control"))
        .map_err(|e| anyhow!("{}: no ./control in control.tar.gz: {e}", ipk.display()))?;
    let control = parse_control(&control_text)?;
    Ok(IpkInfo {
        outer,
        debian_binary,
        control_text,
        control,
        control_members: members.remove("control").unwrap_or_default(),
        data_members: members.remove("data").unwrap_or_default(),
        unpacked: scratch.to_path_buf(),
    })
}

/// `Field: value` lines (continuation lines start with a space and are appended).
pub fn parse_control(text: &str) -> Result<BTreeMap<String, String>> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            let key = last.as_ref().ok_or_else(|| anyhow!("continuation line before any field: {line:?}"))?;
            let v: &mut String = fields.get_mut(key).expect("field exists");
            v.push('\n');
            v.push_str(line.trim());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| anyhow!("control line without ':': {line:?}"))?;
        if fields.insert(k.to_string(), v.trim().to_string()).is_some() {
            return Err(anyhow!("control field {k} given twice"));
        }
        last = Some(k.to_string());
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-ipk-{}-{name}", std::process::id()));
        reset_dir(&d).unwrap();
        d
    }

    #[test]
    fn build_and_read_back() {
        let s = scratch("rt");
        let data = s.join("data");
        let ctl = s.join("ctl");
        std::fs::create_dir_all(data.join("usr/bin")).unwrap();
        std::fs::create_dir_all(&ctl).unwrap();
        std::fs::write(data.join("usr/bin/x"), "12345").unwrap();
        std::fs::set_permissions(data.join("usr/bin/x"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let fields: Control =
            vec![("Package", "x".into()), ("Version", "1-1".into()), ("Description", "a\n more".into())];
        std::fs::write(ctl.join("control"), render_control(&fields)).unwrap();
        assert_eq!(installed_size(&data).unwrap(), 5);
        let out = s.join("x.ipk");
        build(&data, &ctl, &s.join("work"), &out, 1_700_000_000).unwrap();
        let first = std::fs::read(&out).unwrap();
        // Reproducible: the same inputs give the same bytes.
        build(&data, &ctl, &s.join("work"), &out, 1_700_000_000).unwrap();
        assert_eq!(first, std::fs::read(&out).unwrap());

        let info = inspect(&out, &s.join("inspect")).unwrap();
        assert_eq!(info.outer, ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]);
        assert_eq!(info.debian_binary, "2.0\n");
        assert_eq!(info.control["Package"], "x");
        assert_eq!(info.control["Description"], "a\nmore");
        assert!(info.data_members.contains(&"./usr/bin/x".to_string()), "{:?}", info.data_members);
        let mode = std::fs::metadata(info.data_path("/usr/bin/x")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        std::fs::remove_dir_all(&s).ok();
    }

    #[test]
    fn control_parse_errors() {
        assert!(parse_control("A: 1\nA: 2\n").unwrap_err().to_string().contains("twice"));
        assert!(parse_control(" x\n").is_err());
        assert!(parse_control("nocolon\n").is_err());
    }
}
