//! The history's files under `<state_dir>/history/`: one append-only file of hourly records per
//! UTC day (`hours-<day>.bin`, `day` = unix time / 86400) and one of daily device totals
//! (`days.bin`), each a sequence of checksummed batches; compaction and retention replace files
//! whole through [`persist::write_files`].
//!
//! A batch is `"SPH1"`, the payload's length (u32 LE), its CRC-32 (u32 LE) and the payload: records
//! of `hour` (u32 LE, hours since the epoch; days.bin: the day's first hour), the device's MAC
//! (6 bytes), the remote's key (u8 length + UTF-8: its DNS name or address; empty for a device
//! total) and five LEB128 counters (bytes in, bytes out, packets, connections, blocked). A batch
//! is appended with one `write` and fsynced: a power cut or kill -9 can only tear the last one,
//! which the next open drops (the file is cut back to the last whole batch). Damage anywhere else
//! is corruption: the file is moved aside (`<name>.corrupt-<time>`) and a fresh one started.

use std::cmp::Ordering;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::model::event::{MacAddr, Timestamp};
use crate::model::persist;

const MAGIC: &[u8; 4] = b"SPH1";
const HEADER: usize = 12;
/// A batch larger than this is not one of ours (a flush of 50 devices is a few hundred KB).
const MAX_BATCH: usize = 64 << 20;

/// What a device exchanged with one remote (or in total) during one hour or day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets: u64,
    pub connections: u64,
    pub blocked: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.bytes_in = self.bytes_in.saturating_add(o.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(o.bytes_out);
        self.packets = self.packets.saturating_add(o.packets);
        self.connections = self.connections.saturating_add(o.connections);
        self.blocked = self.blocked.saturating_add(o.blocked);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_in.saturating_add(self.bytes_out)
    }
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Hours since the epoch (a day's first hour in `days.bin`).
    pub hour: u32,
    pub device: MacAddr,
    /// The remote's DNS name or address; empty for a device's total.
    pub remote: String,
    pub counters: Counters,
}

/// Why a history file could not be used.
#[derive(Debug)]
pub struct StoreError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write the history file {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Appends one record's encoding to `out`.
pub fn encode(out: &mut Vec<u8>, r: &Record) {
    out.extend_from_slice(&r.hour.to_le_bytes());
    out.extend_from_slice(&r.device.0);
    let key = truncate_key(&r.remote);
    out.push(key.len() as u8);
    out.extend_from_slice(key.as_bytes());
    let c = &r.counters;
    for v in [c.bytes_in, c.bytes_out, c.packets, c.connections, c.blocked] {
        put_varint(out, v);
    }
}

/// A key of at most 255 bytes, cut at a character boundary.
fn truncate_key(k: &str) -> &str {
    let mut end = k.len().min(255);
    while !k.is_char_boundary(end) {
        end -= 1;
    }
    &k[..end]
}

/// Decodes a batch's records into `out`, or only those of device `only` (every record is still
/// checked: a query reads the file of all devices, and skips allocating the others').
fn decode_payload(p: &[u8], out: &mut Vec<Record>, only: Option<MacAddr>) -> Option<()> {
    let mut pos = 0;
    while pos < p.len() {
        let hour = u32::from_le_bytes(p.get(pos..pos + 4)?.try_into().ok()?);
        let device = MacAddr(p.get(pos + 4..pos + 10)?.try_into().ok()?);
        let len = *p.get(pos + 10)? as usize;
        let remote = std::str::from_utf8(p.get(pos + 11..pos + 11 + len)?).ok()?;
        pos += 11 + len;
        let mut v = [0u64; 5];
        for x in &mut v {
            *x = get_varint(p, &mut pos)?;
        }
        if only.is_some_and(|d| d != device) {
            continue;
        }
        let counters = Counters { bytes_in: v[0], bytes_out: v[1], packets: v[2], connections: v[3], blocked: v[4] };
        out.push(Record { hour, device, remote: remote.to_string(), counters });
    }
    Some(())
}

fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// One batch as written to disk.
pub fn batch(records: &[Record]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(records.len() * 40);
    for r in records {
        encode(&mut payload, r);
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// What reading a file found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Every batch whole; `good` bytes of whole batches, less than the file's length when the
    /// last batch was torn (a crash during its write).
    Ok { records: Vec<Record>, good: usize },
    /// A batch before the last is damaged, or the file is not ours.
    Corrupt { records: Vec<Record>, at: usize },
}

/// Reads the batches of a file's bytes.
#[cfg(test)]
pub fn parse(data: &[u8]) -> Parsed {
    parse_only(data, None)
}

/// [`parse`], keeping the records of device `only` (all when `None`).
fn parse_only(data: &[u8], only: Option<MacAddr>) -> Parsed {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < HEADER {
            // A header cut short can only be the tail being written.
            return if MAGIC.starts_with(&rest[..rest.len().min(4)]) {
                Parsed::Ok { records, good: pos }
            } else {
                Parsed::Corrupt { records, at: pos }
            };
        }
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default()) as usize;
        let sum = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default());
        if &rest[..4] != MAGIC || len > MAX_BATCH {
            return Parsed::Corrupt { records, at: pos };
        }
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            // The last batch, cut short.
            return Parsed::Ok { records, good: pos };
        };
        let whole = HEADER + len == rest.len();
        let mut batch_records = Vec::new();
        if crc(payload) != sum || decode_payload(payload, &mut batch_records, only).is_none() {
            // A torn write leaves a wrong checksum only in the last batch.
            return if whole { Parsed::Ok { records, good: pos } } else { Parsed::Corrupt { records, at: pos } };
        }
        records.append(&mut batch_records);
        pos += HEADER + len;
    }
    Parsed::Ok { records, good: pos }
}

/// The history directory: its files, read and appended.
pub struct Store {
    dir: PathBuf,
    /// Files moved aside since the last call of [`Store::take_moved_aside`] (for alerts).
    moved_aside: Vec<String>,
    /// Bytes written to history files since start (flash wear: `SPIN/stat/history/bytes-written`).
    written: std::cell::Cell<u64>,
}

pub const DAYS_FILE: &str = "days.bin";

impl Store {
    /// The store in `dir` (created if missing; an error leaves history off).
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        Ok(Store { dir: dir.to_path_buf(), moved_aside: Vec::new(), written: std::cell::Cell::new(0) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes appended or rewritten since the store was opened.
    pub fn bytes_written(&self) -> u64 {
        self.written.get()
    }

    pub fn hour_file(&self, day: i64) -> PathBuf {
        self.dir.join(format!("hours-{day}.bin"))
    }

    pub fn days_file(&self) -> PathBuf {
        self.dir.join(DAYS_FILE)
    }

    /// The days that have an hourly file, ascending.
    pub fn hour_days(&self) -> Vec<i64> {
        let mut days: Vec<i64> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("hours-")?.strip_suffix(".bin")?.parse().ok()
            })
            .collect();
        days.sort_unstable();
        days
    }

    /// The history files' total size in bytes.
    pub fn size(&self) -> u64 {
        fs::read_dir(&self.dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
    }

    /// The records of one file. A torn last batch is cut off (so appends go on after the last
    /// whole one); a corrupt file is moved aside, logged, and read as empty from then on.
    pub fn read(&mut self, path: &Path) -> Vec<Record> {
        self.read_only(path, None)
    }

    /// [`Store::read`], keeping one device's records (queries: a day's file holds every device's).
    pub fn read_device(&mut self, path: &Path, device: MacAddr) -> Vec<Record> {
        self.read_only(path, Some(device))
    }

    fn read_only(&mut self, path: &Path, only: Option<MacAddr>) -> Vec<Record> {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                warn!("cannot read the history file {}: {e}", path.display());
                return Vec::new();
            }
        };
        match parse_only(&data, only) {
            Parsed::Ok { records, good } => {
                if good < data.len() {
                    info!(
                        "{}: dropped a torn last batch ({} bytes, an interrupted write)",
                        path.display(),
                        data.len() - good
                    );
                    if let Err(e) = OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(good as u64)) {
                        warn!("cannot cut {} back to its last whole batch: {e}", path.display());
                    }
                }
                records
            }
            Parsed::Corrupt { at, .. } => {
                let aside = path.with_extension(format!("bin.corrupt-{}", std::process::id()));
                match fs::rename(path, &aside) {
                    Ok(()) => warn!(
                        "the history file {} is damaged at byte {at}: moved aside to {}, starting a fresh one",
                        path.display(),
                        aside.display()
                    ),
                    Err(e) => warn!(
                        "the history file {} is damaged at byte {at} and cannot be moved aside: {e}",
                        path.display()
                    ),
                }
                self.moved_aside.push(path.display().to_string());
                Vec::new()
            }
        }
    }

    /// Files found corrupt and moved aside since the last call.
    pub fn take_moved_aside(&mut self) -> Vec<String> {
        std::mem::take(&mut self.moved_aside)
    }

    /// Appends one batch to `path` with one write, then fsyncs. On failure the file is cut back
    /// to its previous length, so a later append does not follow a torn batch.
    pub fn append(&self, path: &Path, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let err = |source| StoreError { path: path.to_path_buf(), source };
        let new = !path.exists();
        let mut f = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        let before = f.metadata().map_err(err)?.len();
        let data = batch(records);
        if let Err(e) = f.write_all(&data).and_then(|()| f.sync_data()) {
            let _ = f.set_len(before);
            return Err(err(e));
        }
        self.written.set(self.written.get() + data.len() as u64);
        if new {
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Replaces a file with the given records as one batch, atomically (an empty list removes it).
    pub fn replace(&self, path: &Path, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(StoreError { path: path.to_path_buf(), source: e })
                }
                _ => Ok(()),
            };
        }
        let data = batch(records);
        let len = data.len() as u64;
        persist::write_files(&[(path.to_path_buf(), data)])
            .map_err(|e| StoreError { path: e.path, source: e.source })?;
        self.written.set(self.written.get() + len);
        Ok(())
    }

    pub fn remove(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!("cannot remove the history file {}: {e}", path.display());
            }
        }
    }
}

/// Records in (hour, device, remote) order.
pub fn by_key(a: &Record, b: &Record) -> Ordering {
    (a.hour, a.device, &a.remote).cmp(&(b.hour, b.device, &b.remote))
}

/// Sorts records. Every sort of the history goes through this one function with a function
/// pointer, so the sort is compiled once (each closure would be a copy: binary size).
pub fn sort_records(v: &mut [Record], cmp: fn(&Record, &Record) -> Ordering) {
    v.sort_unstable_by(cmp);
}

/// Sums records with the same hour, device and remote (compaction), in [`by_key`] order.
pub fn merge(mut v: Vec<Record>) -> Vec<Record> {
    sort_records(&mut v, by_key);
    let mut out: Vec<Record> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(l) if l.hour == r.hour && l.device == r.device && l.remote == r.remote => l.counters.add(&r.counters),
            _ => out.push(r),
        }
    }
    out
}

/// Each device's total per day of some hourly records.
pub fn day_totals(records: &[Record]) -> Vec<Record> {
    merge(
        records
            .iter()
            .map(|r| Record {
                hour: r.hour - r.hour % 24,
                device: r.device,
                remote: String::new(),
                counters: r.counters,
            })
            .collect(),
    )
}

/// The UTC day of an hour number.
pub fn day_of_hour(hour: u32) -> i64 {
    i64::from(hour) / 24
}

/// The hour number of a time (clamped to the u32 range).
pub fn hour_of(t: Timestamp) -> u32 {
    (t.max(0) / 3600).min(i64::from(u32::MAX)) as u32
}
