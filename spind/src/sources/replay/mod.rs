//! Capture replay: streams a pcap or pcapng file through the packet [`Decoder`] and feeds the
//! resulting events to the core, paced like the original traffic (or as fast as possible).
//!
//! [`validate`] reads the whole file once and checks every record, so a bad file is refused at
//! startup with the byte offset of the problem; [`run`] then replays it on its own thread.
//! Files are read in chunks (never loaded whole). Framing (how long each record is) is checked
//! by us before a record is handed to pcap-file's parsers, so the parsers always see exactly
//! one complete record and a damaged length can never make us read or buffer the whole file.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{Endianness, TsResolution};

use crate::model::event::{Event, Input, Timestamp};
use crate::sources::packet::{second_of, Decoder, LinkType};

/// Records longer than this are refused as corrupt (pcapng blocks; pcap records are limited
/// by the snaplen rule below).
const MAX_RECORD: usize = 16 << 20;
/// libpcap accepts records up to the larger of the file's snaplen and this.
const PCAP_MAX_SNAPLEN: u32 = 262_144;
const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
}

/// What [`validate`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureInfo {
    pub packets: u64,
    /// Timestamp (unix seconds) of the first and the last packet; 0 for an empty capture.
    pub first_ts: f64,
    pub last_ts: f64,
    pub format: CaptureFormat,
}

#[derive(Debug)]
pub enum ReplayError {
    Io { path: PathBuf, err: io::Error },
    Malformed { path: PathBuf, offset: u64, what: String },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Io { path, err } => write!(f, "{}: {}", path.display(), err),
            ReplayError::Malformed { path, offset, what } => {
                write!(f, "{}: malformed capture at byte offset {}: {}", path.display(), offset, what)
            }
        }
    }
}

impl std::error::Error for ReplayError {}

/// Reads the whole capture once, checking every record. Returns its packet count and time span.
pub fn validate(path: &Path) -> Result<CaptureInfo, ReplayError> {
    scan(CaptureReader::open(path)?)
}

/// [`validate`] for a capture that is not a file (`name` stands for it in errors).
pub(crate) fn validate_reader<R: Read>(name: &Path, reader: R) -> Result<CaptureInfo, ReplayError> {
    scan(CaptureReader::new(name, reader)?)
}

/// Reads every record of a capture, keeping only its count and time span.
fn scan<R: Read>(mut rd: CaptureReader<R>) -> Result<CaptureInfo, ReplayError> {
    let (mut packets, mut first_ts, mut last_ts) = (0u64, 0.0, 0.0);
    while rd.next_packet(&mut |p: Packet<'_>| {
        if packets == 0 {
            first_ts = p.ts;
        }
        last_ts = p.ts;
        packets += 1;
    })? {}
    Ok(CaptureInfo { packets, first_ts, last_ts, format: rd.format() })
}

/// Replays the capture at `path` into `tx` (see the module documentation); meant for its own
/// thread, after [`validate`] accepted the file.
///
/// `speed` 0 (or anything not positive and finite) replays as fast as possible; otherwise
/// packet i is delivered at `start + (ts_i - ts_0) / speed`. A [`Event::Tick`] is sent whenever
/// the capture's second advances (also during pauses in the capture), after the flows of the
/// previous second. At the end come the last flows, [`Event::ReplayFinished`], and then a tick
/// per wall-clock second continuing the capture's clock, until the receiver is gone.
///
/// `tx` is normally the core's `Sender<Input>`; a bounded `SyncSender<Input>` also works and
/// then bounds memory when the consumer is slower than an as-fast-as-possible replay.
pub fn run(path: &Path, speed: f64, tx: impl InputSink) -> Result<(), ReplayError> {
    let speed = if speed.is_finite() && speed > 0.0 { speed } else { 0.0 };
    let mut rd = CaptureReader::open(path)?;
    let mut player = Player {
        dec: Decoder::new(),
        out: Vec::with_capacity(64),
        tx,
        tick: None,
        gone: false,
        speed,
        wall_start: Instant::now(),
        first_ts: None,
        packets: 0,
        last_ts: 0.0,
    };
    while !player.gone && rd.next_packet(&mut |p: Packet<'_>| player.packet(p))? {}
    if player.gone {
        return Ok(());
    }

    player.dec.finish(&mut player.out);
    let last_sec = if player.packets == 0 { now_secs() } else { second_of(player.last_ts) };
    player.out.push(Event::ReplayFinished { time: last_sec, packets: player.packets });
    player.send_out();
    log::info!("{}: replay finished after {} packets", path.display(), player.packets);

    // Keep the model's clock going (expiry etc.) from where the capture ended.
    let end = Instant::now();
    let mut n = 1u64;
    while !player.gone {
        let due = end + Duration::from_secs(n);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let time = last_sec + end.elapsed().as_secs() as i64;
        player.gone = !player.tx.send_input(Input::Event(Event::Tick { time }));
        n += 1;
    }
    Ok(())
}

/// Where [`run`] delivers its events: `false` when the receiver is gone.
pub trait InputSink {
    fn send_input(&self, input: Input) -> bool;
}

impl InputSink for Sender<Input> {
    fn send_input(&self, input: Input) -> bool {
        self.send(input).is_ok()
    }
}

impl InputSink for SyncSender<Input> {
    fn send_input(&self, input: Input) -> bool {
        self.send(input).is_ok()
    }
}

fn now_secs() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The replay loop's state.
struct Player<S> {
    dec: Decoder,
    out: Vec<Event>,
    tx: S,
    /// Last second a Tick was sent for.
    tick: Option<Timestamp>,
    /// The receiver hung up: stop.
    gone: bool,
    speed: f64,
    wall_start: Instant,
    first_ts: Option<f64>,
    packets: u64,
    last_ts: f64,
}

impl<S: InputSink> Player<S> {
    fn packet(&mut self, p: Packet<'_>) {
        if self.gone {
            return;
        }
        let first_ts = *self.first_ts.get_or_insert(p.ts);
        if self.speed > 0.0 {
            self.pace(first_ts, p.ts);
        }
        self.advance_to(second_of(p.ts));
        if let Some(link) = p.link {
            self.dec.frame(p.ts, link, p.data, &mut self.out);
        }
        self.packets += 1;
        self.last_ts = p.ts;
        self.send_out();
    }

    /// Flushes the decoder up to `sec` and announces the new second.
    fn advance_to(&mut self, sec: Timestamp) {
        if self.tick.is_some_and(|t| sec <= t) {
            return;
        }
        self.dec.advance(sec, &mut self.out);
        self.out.push(Event::Tick { time: sec });
        self.tick = Some(sec);
    }

    /// Sleeps until the packet with timestamp `ts` is due, ticking through the capture seconds
    /// that pass meanwhile (so a quiet stretch of the capture still moves the model's clock).
    fn pace(&mut self, first_ts: f64, ts: f64) {
        loop {
            let capture_now = first_ts + self.wall_start.elapsed().as_secs_f64() * self.speed;
            if capture_now >= ts {
                return;
            }
            let sec = second_of(capture_now);
            if self.tick.is_some_and(|t| sec > t) {
                self.advance_to(sec);
                self.send_out();
                if self.gone {
                    return;
                }
            }
            // Wake up at the packet or at the next capture second, whichever is first.
            let until = ts.min((sec + 1) as f64) - capture_now;
            let wait = (until / self.speed).clamp(0.0, 1.0);
            std::thread::sleep(Duration::from_secs_f64(wait.max(0.000_05)));
        }
    }

    fn send_out(&mut self) {
        for ev in self.out.drain(..) {
            if !self.gone && !self.tx.send_input(Input::Event(ev)) {
                self.gone = true;
            }
        }
    }
}

/// One captured frame. `link` is `None` for link types the decoder does not understand.
struct Packet<'a> {
    ts: f64,
    link: Option<LinkType>,
    data: &'a [u8],
}

enum Format {
    Pcap { parser: PcapParser, link: Option<LinkType>, nanos: bool, big_endian: bool, max_len: u32 },
    PcapNg { parser: PcapNgParser, last_ts: f64 },
}

/// Streams records out of a capture file (see the module documentation).
struct CaptureReader<R> {
    path: PathBuf,
    chunks: Chunks<R>,
    format: Format,
}

impl CaptureReader<File> {
    fn open(path: &Path) -> Result<Self, ReplayError> {
        let file = File::open(path).map_err(|err| ReplayError::Io { path: path.to_owned(), err })?;
        CaptureReader::new(path, file)
    }
}

impl<R: Read> CaptureReader<R> {
    fn new(path: &Path, reader: R) -> Result<Self, ReplayError> {
        let mut chunks = Chunks::new(reader);
        let path = path.to_owned();
        let magic = match chunks.record(&path, |b| Ok(if b.len() >= 4 { Some(4) } else { None }))? {
            Some(m) => u32::from_be_bytes([m[0], m[1], m[2], m[3]]),
            None => return Err(malformed(&path, 0, "empty file")),
        };
        let format = match magic {
            0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1 => {
                let hdr = chunks
                    .record(&path, |b| Ok((b.len() >= 24).then_some(24)))?
                    .ok_or_else(|| malformed(&path, 0, "file ends inside the pcap file header"))?;
                let (_, parser) = PcapParser::new(hdr).map_err(|e| malformed(&path, 0, &e.to_string()))?;
                let h = parser.header();
                let link = LinkType::from_datalink(h.datalink);
                if link.is_none() {
                    log::warn!("{}: link type {:?} is not supported, packets are skipped", path.display(), h.datalink);
                }
                Format::Pcap {
                    link,
                    nanos: h.ts_resolution == TsResolution::NanoSecond,
                    big_endian: h.endianness == Endianness::Big,
                    max_len: h.snaplen.max(PCAP_MAX_SNAPLEN).min(MAX_RECORD as u32),
                    parser,
                }
            }
            PCAPNG_SHB => {
                let shb = chunks
                    .record(&path, |b| pcapng_block_len(b, Endianness::Big))?
                    .ok_or_else(|| malformed(&path, 0, "file ends inside the pcapng section header"))?;
                let (_, parser) = PcapNgParser::new(shb).map_err(|e| malformed(&path, 0, &e.to_string()))?;
                Format::PcapNg { parser, last_ts: 0.0 }
            }
            _ => return Err(malformed(&path, 0, &format!("not a pcap or pcapng file (magic {magic:#010x})"))),
        };
        chunks.consume();
        Ok(CaptureReader { path, chunks, format })
    }

    fn format(&self) -> CaptureFormat {
        match self.format {
            Format::Pcap { .. } => CaptureFormat::Pcap,
            Format::PcapNg { .. } => CaptureFormat::PcapNg,
        }
    }

    /// Calls `f` with the next packet. `Ok(false)` at the end of the file.
    fn next_packet(&mut self, f: &mut dyn FnMut(Packet<'_>)) -> Result<bool, ReplayError> {
        loop {
            let offset = self.chunks.offset();
            let path = &self.path;
            let bad = |what: &str| malformed(path, offset, what);
            match &mut self.format {
                Format::Pcap { parser, link, nanos, big_endian, max_len } => {
                    let (big, max) = (*big_endian, *max_len);
                    let Some(rec) = self.chunks.record(path, |b| pcap_record_len(b, big, max))? else {
                        return Ok(false);
                    };
                    let (_, raw) = parser.next_raw_packet(rec).map_err(|e| bad(&e.to_string()))?;
                    let frac_max = if *nanos { 1_000_000_000 } else { 1_000_000 };
                    if raw.ts_frac >= frac_max {
                        return Err(bad("timestamp fraction out of range"));
                    }
                    let ts = raw.ts_sec as f64 + raw.ts_frac as f64 / frac_max as f64;
                    f(Packet { ts, link: *link, data: &raw.data });
                    self.chunks.consume();
                    return Ok(true);
                }
                Format::PcapNg { parser, last_ts } => {
                    let endianness = parser.section().endianness;
                    let Some(rec) = self.chunks.record(path, |b| pcapng_block_len(b, endianness))? else {
                        return Ok(false);
                    };
                    let kind = read_u32(rec, 0, endianness == Endianness::Big);
                    if !matches!(kind, PCAPNG_SHB | PCAPNG_IDB | PCAPNG_PB | PCAPNG_SPB | PCAPNG_EPB) {
                        // Statistics, name resolution, ...: only the framing matters to us.
                        parser.next_raw_block(rec).map_err(|e| bad(&e.to_string()))?;
                        self.chunks.consume();
                        continue;
                    }
                    let (_, block) = parser.next_block(rec).map_err(|e| bad(&e.to_string()))?;
                    let (iface, ticks, data, orig_len) = match &block {
                        Block::EnhancedPacket(p) => {
                            (p.interface_id, Some(p.timestamp.as_nanos() as u64), &p.data[..], p.original_len)
                        }
                        Block::Packet(p) => (p.interface_id as u32, Some(p.timestamp), &p.data[..], p.original_len),
                        Block::SimplePacket(p) => (0, None, &p.data[..], p.original_len),
                        _ => {
                            self.chunks.consume();
                            continue;
                        }
                    };
                    let Some(idb) = parser.interfaces().get(iface as usize) else {
                        return Err(bad(&format!("packet of undeclared interface {iface}")));
                    };
                    let mut data = data;
                    if ticks.is_none() {
                        // A simple packet block's data is padded; the real length is the
                        // original length limited by the snaplen.
                        let snap = if idb.snaplen == 0 { u32::MAX } else { idb.snaplen };
                        data = &data[..data.len().min(orig_len.min(snap) as usize)];
                    }
                    let ts = match ticks {
                        Some(t) => idb_timestamp(idb, t),
                        None => *last_ts, // simple packets carry no timestamp
                    };
                    *last_ts = ts;
                    f(Packet { ts, link: LinkType::from_datalink(idb.linktype), data });
                    self.chunks.consume();
                    return Ok(true);
                }
            }
        }
    }
}

fn malformed(path: &Path, offset: u64, what: &str) -> ReplayError {
    ReplayError::Malformed { path: path.to_owned(), offset, what: what.to_owned() }
}

fn read_u32(b: &[u8], at: usize, big: bool) -> u32 {
    let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// Length of the pcap record at the start of `b` (16-byte header + captured length), `None` if
/// the header is not complete yet.
fn pcap_record_len(b: &[u8], big: bool, max_len: u32) -> Result<Option<usize>, String> {
    if b.len() < 16 {
        return Ok(None);
    }
    let incl_len = read_u32(b, 8, big);
    if incl_len > max_len {
        return Err(format!("captured length {incl_len} exceeds the maximum of {max_len}"));
    }
    Ok(Some(16 + incl_len as usize))
}

/// Length of the pcapng block at the start of `b`, `None` if its header is not complete yet.
/// A section header block announces its own byte order.
fn pcapng_block_len(b: &[u8], section: Endianness) -> Result<Option<usize>, String> {
    if b.len() < 12 {
        return Ok(None);
    }
    let mut big = section == Endianness::Big;
    if u32::from_be_bytes([b[0], b[1], b[2], b[3]]) == PCAPNG_SHB {
        big = match u32::from_be_bytes([b[8], b[9], b[10], b[11]]) {
            0x1A2B_3C4D => true,
            0x4D3C_2B1A => false,
            m => return Err(format!("bad section header byte-order magic {m:#010x}")),
        };
    }
    let len = read_u32(b, 4, big) as usize;
    if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
        return Err(format!("bad block length {len}"));
    }
    Ok(Some(len))
}

/// Packet timestamp in seconds: pcap-file hands out the raw tick count (as nanoseconds), the
/// interface's `if_tsresol` (default microseconds) and `if_tsoffset` give it meaning.
fn idb_timestamp(
    idb: &pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock<'_>,
    ticks: u64,
) -> f64 {
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption as O;
    let mut resol = 6u8;
    let mut offset = 0u64;
    for opt in &idb.options {
        match opt {
            O::IfTsResol(r) => resol = *r,
            O::IfTsOffset(o) => offset = *o,
            _ => {}
        }
    }
    let secs = if resol & 0x80 != 0 {
        ticks as f64 / 2f64.powi((resol & 0x7f) as i32)
    } else if resol <= 19 {
        // Integer split keeps microsecond/nanosecond precision for current dates.
        let unit = 10u64.pow(resol as u32);
        (ticks / unit) as f64 + (ticks % unit) as f64 / unit as f64
    } else {
        ticks as f64 / 10f64.powi(resol as i32)
    };
    secs + offset as f64
}

/// A growing window over a reader, tracking the file offset of its start.
struct Chunks<R> {
    reader: R,
    buf: Vec<u8>,
    /// Start of the current record in `buf`, and its length once `record` returned it.
    pos: usize,
    cur_len: usize,
    /// End of valid data in `buf`.
    len: usize,
    /// File offset of `buf[0]`.
    base: u64,
}

impl<R: Read> Chunks<R> {
    fn new(reader: R) -> Self {
        Chunks { reader, buf: vec![0; 64 * 1024], pos: 0, cur_len: 0, len: 0, base: 0 }
    }

    /// File offset of the current record.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Marks the record returned by the last `record` call as done.
    fn consume(&mut self) {
        self.pos += self.cur_len;
        self.cur_len = 0;
    }

    /// The next record, whose length `need` tells once it sees enough of its start (`Ok(None)`:
    /// show me more). `Ok(None)` at a clean end of file; a record cut short is an error. Call
    /// [`Chunks::consume`] when done with it.
    fn record(
        &mut self,
        path: &Path,
        mut need: impl FnMut(&[u8]) -> Result<Option<usize>, String>,
    ) -> Result<Option<&[u8]>, ReplayError> {
        loop {
            let avail = self.len - self.pos;
            let want = need(&self.buf[self.pos..self.len]).map_err(|w| malformed(path, self.offset(), &w))?;
            if let Some(n) = want {
                if n <= avail {
                    self.cur_len = n;
                    return Ok(Some(&self.buf[self.pos..self.pos + n]));
                }
            }
            if !self.fill(want.unwrap_or(avail + 1)).map_err(|err| ReplayError::Io { path: path.to_owned(), err })? {
                if avail == 0 {
                    return Ok(None);
                }
                return Err(malformed(path, self.offset(), "file ends inside this record (truncated)"));
            }
        }
    }

    /// Reads more, towards a record of `want` bytes. `false` at end of file.
    fn fill(&mut self, want: usize) -> io::Result<bool> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.base += self.pos as u64;
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() && want > self.len {
            // Grow only as data actually arrives, so a corrupt length near the end of a file
            // does not allocate what the file cannot contain.
            self.buf.resize((self.buf.len() * 2).min(want.next_power_of_two()), 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests;
