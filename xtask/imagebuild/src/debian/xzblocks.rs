//! The `.img.xz` output, assembled from cached xz blocks.
//!
//! `xz -T0 --block-size=64MiB` already compresses a disk as independent 64 MiB blocks. Here each
//! 64 MiB chunk of the raw disk is compressed on its own (one `xz` per chunk, as a one-block
//! stream) and kept under `target/image/<board>/xz-blocks/` by the chunk's sha256; the output is
//! one xz stream made of those blocks with a new index. A rebuild after a spind change only
//! touches a few chunks of the disk, so only those are compressed again (seconds instead of a
//! minute). The result is an ordinary single-stream `.xz` with sizes in every block header
//! (so `xz -d -T0` can decompress it in parallel), the same bytes `xz -T2` would write.
//!
//! xz file format: <https://tukaani.org/xz/xz-file-format.txt> (stream header 12 bytes, blocks
//! padded to 4 bytes, index of (unpadded size, uncompressed size) records, stream footer).

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use runner::host::hex;
use runner::{cmd, Stdin, Stream};
use sha2::{Digest, Sha256};

use crate::stage::mkdirs;

const HEADER_MAGIC: &[u8; 6] = b"\xfd7zXZ\0";
const FOOTER_MAGIC: &[u8; 2] = b"YZ";

/// How an image is compressed: `xz -LEVEL` in blocks of `block_size` bytes.
#[derive(Clone, Debug)]
pub struct XzSettings {
    /// xz's preset, e.g. "-1".
    pub preset: &'static str,
    pub block_size: u64,
}

/// What [`compress`] did.
#[derive(Debug, Default, PartialEq)]
pub struct XzStats {
    pub blocks: usize,
    /// Blocks that were compressed now (the others came from the cache).
    pub compressed: usize,
    pub sha256: String,
}

/// One block of a one-block xz stream, as stored in the cache.
struct Block {
    /// The block (header, compressed data, padding, check): a multiple of 4 bytes.
    bytes: Vec<u8>,
    unpadded: u64,
    uncompressed: u64,
    /// The stream flags (check type) of the stream it came from.
    flags: [u8; 2],
}

/// Compresses `input` to `output` (written atomically), reusing blocks in `cache` and leaving
/// there exactly the blocks this output is made of. `on_chunk(done, total)` follows progress.
pub fn compress(
    input: &Path,
    output: &Path,
    cache: &Path,
    settings: &XzSettings,
    on_chunk: &(dyn Fn(usize, usize) + Sync),
) -> Result<XzStats> {
    let cache = cache.join(format!("xz{}-{}", settings.preset, settings.block_size));
    mkdirs(&cache)?;
    let len = fs::metadata(input).map_err(|e| anyhow!("cannot read {}: {e}", input.display()))?.len();
    let chunks = len.div_ceil(settings.block_size).max(1) as usize;

    // Hash the chunks; compress the ones not in the cache, one xz per core.
    let hashes: Vec<Mutex<Option<String>>> = (0..chunks).map(|_| Mutex::new(None)).collect();
    let next = Mutex::new(0usize);
    let compressed = Mutex::new(0usize);
    let done = Mutex::new(0usize);
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(chunks);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    if *n >= chunks || error.lock().unwrap().is_some() {
                        return;
                    }
                    *n += 1;
                    *n - 1
                };
                match chunk_block(input, i as u64, settings, &cache) {
                    Ok((hash, fresh)) => {
                        *hashes[i].lock().unwrap() = Some(hash);
                        if fresh {
                            *compressed.lock().unwrap() += 1;
                        }
                        let mut d = done.lock().unwrap();
                        *d += 1;
                        on_chunk(*d, chunks);
                    }
                    Err(e) => {
                        error.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap() {
        return Err(e);
    }
    let hashes: Vec<String> =
        hashes.into_iter().map(|h| h.into_inner().unwrap().expect("every chunk was hashed")).collect();

    // Assemble: stream header, the blocks in order, index, footer.
    let tmp = output.with_extension("xz.tmp");
    let mut out = Sha256Writer::new(File::create(&tmp).map_err(|e| anyhow!("cannot create {}: {e}", tmp.display()))?);
    let mut records = Vec::with_capacity(chunks);
    let mut flags = None;
    for h in &hashes {
        let path = cache.join(format!("{h}.xz"));
        let data = fs::read(&path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
        let block =
            parse_one_block_stream(&data).map_err(|e| anyhow!("{}: {e} (delete it to rebuild)", path.display()))?;
        match flags {
            None => {
                flags = Some(block.flags);
                out.write_all(&stream_header(block.flags))
            }
            Some(f) if f != block.flags => {
                return Err(anyhow!("{}: check type differs from the other blocks", path.display()))
            }
            Some(_) => Ok(()),
        }
        .and_then(|_| out.write_all(&block.bytes))
        .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))?;
        records.push((block.unpadded, block.uncompressed));
    }
    let flags = flags.expect("at least one block");
    let index = index(&records);
    out.write_all(&index)
        .and_then(|_| out.write_all(&stream_footer(flags, index.len())))
        .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))?;
    let (file, sha256) = out.finish();
    file.sync_all().map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, output).map_err(|e| anyhow!("cannot rename {}: {e}", tmp.display()))?;

    // Keep the cache to this image's blocks.
    let keep: std::collections::HashSet<String> = hashes.iter().map(|h| format!("{h}.xz")).collect();
    if let Ok(rd) = fs::read_dir(&cache) {
        for e in rd.flatten() {
            if !keep.contains(&e.file_name().to_string_lossy().into_owned()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(XzStats { blocks: chunks, compressed: compressed.into_inner().unwrap(), sha256 })
}

/// Reads chunk `i` of `input`, and makes sure the cache has its block. Returns the chunk's hash
/// and whether it had to be compressed now.
fn chunk_block(input: &Path, i: u64, settings: &XzSettings, cache: &Path) -> Result<(String, bool)> {
    let mut f = File::open(input).map_err(|e| anyhow!("cannot open {}: {e}", input.display()))?;
    f.seek(std::io::SeekFrom::Start(i * settings.block_size))?;
    let mut chunk = Vec::with_capacity(settings.block_size as usize);
    f.take(settings.block_size).read_to_end(&mut chunk).map_err(|e| anyhow!("cannot read {}: {e}", input.display()))?;
    let hash = hex(&Sha256::digest(&chunk));
    let path = cache.join(format!("{hash}.xz"));
    if path.exists() {
        return Ok((hash, false));
    }
    // Per chunk: equal chunks (zeros) may be compressed by two workers at once.
    let tmp = cache.join(format!("{hash}.{i}.tmp"));
    let out = File::create(&tmp).map_err(|e| anyhow!("cannot create {}: {e}", tmp.display()))?;
    // Two threads and input from a pipe: xz's multi-threaded encoder, which writes the sizes
    // into the block header (a single-threaded xz would not); one block uses one core.
    let (preset, block_size, chunk_len) = (settings.preset, settings.block_size.to_string(), chunk.len());
    let sh = crate::paths::shell()?;
    let child = cmd!(sh, "xz -c {preset} -T2 --check=crc64 --block-size={block_size}")
        .stdin(Stdin::Bytes(chunk))
        .spawn(Stream::File(out), Stream::Piped)?;
    let o = child.wait_with_output().map_err(|e| anyhow!("xz: {e}"))?;
    if !o.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(anyhow!(
            "xz failed on block {i} of {} ({}): {}",
            input.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let data = fs::read(&tmp)?;
    let block = parse_one_block_stream(&data).map_err(|e| anyhow!("xz wrote {e}"))?;
    if block.uncompressed != chunk_len as u64 {
        return Err(anyhow!("xz's block {i} holds {} bytes, the chunk {}", block.uncompressed, chunk_len));
    }
    fs::rename(&tmp, &path)?;
    Ok((hash, true))
}

/// Parses an xz stream of exactly one block (an empty input gives no block: refused).
fn parse_one_block_stream(data: &[u8]) -> Result<Block> {
    if data.len() < 12 + 12 || &data[..6] != HEADER_MAGIC {
        return Err(anyhow!("not an xz stream"));
    }
    let flags = [data[6], data[7]];
    if crc32(&data[6..8]) != u32::from_le_bytes(data[8..12].try_into().unwrap()) {
        return Err(anyhow!("an xz stream header with a bad CRC32"));
    }
    let footer = &data[data.len() - 12..];
    if &footer[10..12] != FOOTER_MAGIC || footer[8..10] != flags {
        return Err(anyhow!("a truncated xz stream (no footer)"));
    }
    if crc32(&footer[4..10]) != u32::from_le_bytes(footer[..4].try_into().unwrap()) {
        return Err(anyhow!("an xz stream footer with a bad CRC32"));
    }
    let index_size = (u32::from_le_bytes(footer[4..8].try_into().unwrap()) as usize + 1) * 4;
    let index_start =
        (data.len() - 12).checked_sub(index_size).filter(|&s| s >= 12).context("an xz index larger than the stream")?;
    let index = &data[index_start..data.len() - 12];
    let body = &index[..index.len() - 4];
    if crc32(body) != u32::from_le_bytes(index[index.len() - 4..].try_into().unwrap()) {
        return Err(anyhow!("an xz index with a bad CRC32"));
    }
    if body[0] != 0 {
        return Err(anyhow!("no xz index where the footer points"));
    }
    let mut pos = 1;
    let count = read_varint(body, &mut pos)?;
    if count != 1 {
        return Err(anyhow!("an xz stream of {count} blocks, not one"));
    }
    let unpadded = read_varint(body, &mut pos)?;
    let uncompressed = read_varint(body, &mut pos)?;
    let padded = unpadded.div_ceil(4) * 4;
    if 12 + padded != index_start as u64 {
        return Err(anyhow!("an xz block whose size disagrees with the index"));
    }
    Ok(Block { bytes: data[12..index_start].to_vec(), unpadded, uncompressed, flags })
}

fn stream_header(flags: [u8; 2]) -> Vec<u8> {
    let mut h = HEADER_MAGIC.to_vec();
    h.extend_from_slice(&flags);
    h.extend_from_slice(&crc32(&flags).to_le_bytes());
    h
}

/// The index: indicator, record count, (unpadded, uncompressed) per block, padding, CRC32.
fn index(records: &[(u64, u64)]) -> Vec<u8> {
    let mut x = vec![0u8];
    write_varint(&mut x, records.len() as u64);
    for &(unpadded, uncompressed) in records {
        write_varint(&mut x, unpadded);
        write_varint(&mut x, uncompressed);
    }
    while x.len() % 4 != 0 {
        x.push(0);
    }
    let crc = crc32(&x);
    x.extend_from_slice(&crc.to_le_bytes());
    x
}

fn stream_footer(flags: [u8; 2], index_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(12);
    let backward = (index_len / 4 - 1) as u32;
    let mut tail = backward.to_le_bytes().to_vec();
    tail.extend_from_slice(&flags);
    f.extend_from_slice(&crc32(&tail).to_le_bytes());
    f.extend_from_slice(&tail);
    f.extend_from_slice(FOOTER_MAGIC);
    f
}

/// xz's multibyte integers: 7 bits per byte, least significant first, high bit = more.
fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(data: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let b = *data.get(*pos).context("a truncated xz index")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(anyhow!("an xz integer longer than 9 bytes"))
}

fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A writer that hashes what it writes (the output's sha256 without reading it back).
struct Sha256Writer {
    inner: std::io::BufWriter<File>,
    hash: Sha256,
}

impl Sha256Writer {
    fn new(f: File) -> Self {
        Sha256Writer { inner: std::io::BufWriter::with_capacity(1 << 20, f), hash: Sha256::new() }
    }
    fn finish(self) -> (File, String) {
        let f = self.inner.into_inner().map_err(|e| e.into_error()).expect("flushing the xz output");
        (f, hex(&self.hash.finalize()))
    }
}

impl Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The cache directory of a board's xz blocks.
pub fn cache_dir(board_dir: &Path) -> PathBuf {
    board_dir.join("xz-blocks")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xzblocks-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Data that compresses somewhat but not to nothing (text-like, deterministic).
    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 7 == 0 {
                    b' '
                } else {
                    b'a' + (x % 20) as u8
                }
            })
            .collect()
    }

    fn xz(args: &[&str], input: &Path) -> std::process::Output {
        let sh = runner::Shell::new().unwrap();
        cmd!(sh, "xz {args...} {input}")
            .output()
            .expect("xz (xz-utils) is needed by these tests and by cargo xtask image")
    }

    const SETTINGS: XzSettings = XzSettings { preset: "-1", block_size: 256 * 1024 };

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX >> 1] {
            let mut b = Vec::new();
            write_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos).unwrap(), v);
            assert_eq!(pos, b.len());
        }
        assert_eq!(read_varint(&[0x80; 10], &mut 0).unwrap_err().to_string(), "an xz integer longer than 9 bytes");
    }

    #[test]
    fn assembled_stream_is_what_multithreaded_xz_writes_and_decompresses_back() {
        let d = tmpdir("same");
        let input = d.join("disk.img");
        // 3.5 blocks, one of them zeros.
        let mut data = sample(256 * 1024 * 2, 1);
        data.extend(vec![0u8; 256 * 1024]);
        data.extend(sample(128 * 1024, 2));
        fs::write(&input, &data).unwrap();
        let out = d.join("disk.img.xz");
        let seen = Mutex::new(Vec::new());
        let stats = compress(&input, &out, &d.join("cache"), &SETTINGS, &|done, total| {
            seen.lock().unwrap().push((done, total))
        })
        .unwrap();
        assert_eq!((stats.blocks, stats.compressed), (4, 4));
        assert_eq!(seen.into_inner().unwrap(), [(1, 4), (2, 4), (3, 4), (4, 4)]);
        let ours = fs::read(&out).unwrap();
        assert_eq!(stats.sha256, hex(&Sha256::digest(&ours)));

        // xz itself, multi-threaded, on the whole input: the same bytes.
        let theirs = xz(&["-c", "-1", "-T2", "--block-size=262144"], &input);
        assert!(theirs.status.success());
        assert_eq!(ours.len(), theirs.stdout.len());
        assert!(ours == theirs.stdout, "our stream differs from xz -T2's");

        // And it decompresses to the input.
        let back = xz(&["-dc"], &out);
        assert!(back.status.success());
        assert!(back.stdout == data);
    }

    #[test]
    fn only_changed_chunks_are_compressed_again_and_the_cache_keeps_one_image() {
        let d = tmpdir("cache");
        let input = d.join("disk.img");
        let cache = d.join("cache");
        let out = d.join("disk.img.xz");
        let mut data = sample(256 * 1024 * 4, 3);
        fs::write(&input, &data).unwrap();
        assert_eq!(compress(&input, &out, &cache, &SETTINGS, &|_, _| {}).unwrap().compressed, 4);
        let again = compress(&input, &out, &cache, &SETTINGS, &|_, _| {}).unwrap();
        assert_eq!(again.compressed, 0);

        // Change one byte in the third chunk.
        data[2 * 256 * 1024 + 17] ^= 0x55;
        fs::write(&input, &data).unwrap();
        let changed = compress(&input, &out, &cache, &SETTINGS, &|_, _| {}).unwrap();
        assert_eq!(changed.compressed, 1);
        assert_ne!(changed.sha256, again.sha256);
        let back = xz(&["-dc"], &out);
        assert!(back.stdout == data);
        let cached = fs::read_dir(cache.join("xz-1-262144")).unwrap().count();
        assert_eq!(cached, 4, "the old third block is pruned");
    }

    #[test]
    fn equal_chunks_share_one_cached_block() {
        let d = tmpdir("equal");
        let input = d.join("disk.img");
        let cache = d.join("cache");
        let out = d.join("disk.img.xz");
        let data = sample(256 * 1024, 5).repeat(6);
        fs::write(&input, &data).unwrap();
        let stats = compress(&input, &out, &cache, &SETTINGS, &|_, _| {}).unwrap();
        assert_eq!(stats.blocks, 6);
        assert!(xz(&["-dc"], &out).stdout == data);
        let files: Vec<_> = fs::read_dir(cache.join("xz-1-262144")).unwrap().collect();
        assert_eq!(files.len(), 1, "one block for six equal chunks, no leftovers");
    }

    #[test]
    fn a_damaged_cached_block_is_named() {
        let d = tmpdir("damaged");
        let input = d.join("disk.img");
        let cache = d.join("cache");
        fs::write(&input, sample(1000, 4)).unwrap();
        compress(&input, &d.join("a.xz"), &cache, &SETTINGS, &|_, _| {}).unwrap();
        let blk = fs::read_dir(cache.join("xz-1-262144")).unwrap().next().unwrap().unwrap().path();
        let mut bytes = fs::read(&blk).unwrap();
        let n = bytes.len();
        bytes[n - 20] ^= 1; // inside the index
        fs::write(&blk, bytes).unwrap();
        let e = compress(&input, &d.join("b.xz"), &cache, &SETTINGS, &|_, _| {}).unwrap_err().to_string();
        assert!(e.contains("bad CRC32") && e.contains("delete it"), "{e}");
        assert!(!d.join("b.xz").exists());
    }
}
