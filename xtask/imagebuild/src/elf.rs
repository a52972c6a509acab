//! Just enough ELF to check a cross-built binary: class, byte order, machine, whether it is
//! statically linked (no `PT_INTERP`) and whether it is stripped (no `SHT_SYMTAB`).

use std::path::Path;

use anyhow::{anyhow, Context, Result};

pub const EM_MIPS: u16 = 8;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;

#[derive(Clone, Debug, PartialEq)]
pub struct ElfInfo {
    pub bits: u8,
    pub big_endian: bool,
    pub machine: u16,
    /// No program interpreter: a static (or static-pie) executable.
    pub is_static: bool,
    /// No symbol table section.
    pub stripped: bool,
}

impl ElfInfo {
    pub fn describe(&self) -> String {
        let machine = match self.machine {
            EM_MIPS => "MIPS".to_string(),
            EM_X86_64 => "x86-64".to_string(),
            EM_AARCH64 => "AArch64".to_string(),
            m => format!("machine {m}"),
        };
        format!(
            "ELF {}-bit {}, {machine}, {}, {}",
            self.bits,
            if self.big_endian { "MSB" } else { "LSB" },
            if self.is_static { "statically linked" } else { "dynamically linked" },
            if self.stripped { "stripped" } else { "not stripped" }
        )
    }
}

pub fn read(path: &Path) -> Result<ElfInfo> {
    let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

pub fn parse(b: &[u8]) -> Result<ElfInfo> {
    if b.len() < 52 || &b[..4] != b"\x7fELF" {
        return Err(anyhow!("not an ELF file"));
    }
    let bits = match b[4] {
        1 => 32,
        2 => 64,
        c => return Err(anyhow!("bad ELF class {c}")),
    };
    let big_endian = match b[5] {
        1 => false,
        2 => true,
        d => return Err(anyhow!("bad ELF data encoding {d}")),
    };
    let get = |off: usize, len: usize| -> Result<u64> {
        let s = b.get(off..off + len).context("truncated ELF header")?;
        let mut v: u64 = 0;
        for i in 0..len {
            let byte = if big_endian { s[i] } else { s[len - 1 - i] };
            v = (v << 8) | byte as u64;
        }
        Ok(v)
    };
    let machine = get(18, 2)? as u16;
    // Offsets of e_phoff/e_shoff/... differ between 32- and 64-bit headers.
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if bits == 64 {
        (get(32, 8)?, get(40, 8)?, get(54, 2)?, get(56, 2)?, get(58, 2)?, get(60, 2)?)
    } else {
        (get(28, 4)?, get(32, 4)?, get(42, 2)?, get(44, 2)?, get(46, 2)?, get(48, 2)?)
    };
    let mut is_static = true;
    for i in 0..phnum {
        let p_type = get((phoff + i * phentsize) as usize, 4)?;
        if p_type == 3 {
            is_static = false; // PT_INTERP
        }
    }
    let mut stripped = true;
    for i in 0..shnum {
        let sh_type = get((shoff + i * shentsize) as usize + 4, 4)?;
        if sh_type == 2 {
            stripped = false; // SHT_SYMTAB
        }
    }
    Ok(ElfInfo { bits, big_endian, machine, is_static, stripped })
}

#[cfg(test)]
pub use tests::fake_elf;

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF header with one program header of type `ptype` and one section of `stype`.
    pub fn fake_elf(bits: u8, big_endian: bool, machine: u16, ptype: u32, stype: u32) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = if bits == 64 { 2 } else { 1 };
        b[5] = if big_endian { 2 } else { 1 };
        let put = |b: &mut Vec<u8>, off: usize, len: usize, v: u64| {
            for i in 0..len {
                let shift = 8 * if big_endian { len - 1 - i } else { i };
                b[off + i] = (v >> shift) as u8;
            }
        };
        put(&mut b, 18, 2, machine as u64);
        if bits == 64 {
            put(&mut b, 32, 8, 64); // phoff
            put(&mut b, 40, 8, 256); // shoff
            put(&mut b, 54, 2, 56);
            put(&mut b, 56, 2, 1);
            put(&mut b, 58, 2, 64);
            put(&mut b, 60, 2, 1);
            put(&mut b, 64, 4, ptype as u64);
            put(&mut b, 256 + 4, 4, stype as u64);
        } else {
            put(&mut b, 28, 4, 52);
            put(&mut b, 32, 4, 256);
            put(&mut b, 42, 2, 32);
            put(&mut b, 44, 2, 1);
            put(&mut b, 46, 2, 40);
            put(&mut b, 48, 2, 1);
            put(&mut b, 52, 4, ptype as u64);
            put(&mut b, 256 + 4, 4, stype as u64);
        }
        b
    }

    #[test]
    fn header_fields() {
        let e = parse(&fake_elf(64, false, EM_AARCH64, 1, 3)).unwrap();
        assert_eq!((e.bits, e.big_endian, e.machine, e.is_static, e.stripped), (64, false, 183, true, true));
        let e = parse(&fake_elf(32, true, EM_MIPS, 3, 2)).unwrap();
        assert_eq!((e.bits, e.big_endian, e.machine, e.is_static, e.stripped), (32, true, 8, false, false));
        assert_eq!(e.describe(), "ELF 32-bit MSB, MIPS, dynamically linked, not stripped");
        assert!(parse(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn this_test_binary_is_host_elf() {
        let exe = std::env::current_exe().unwrap();
        let e = read(&exe).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!((e.bits, e.big_endian, e.machine), (64, false, EM_X86_64));
        }
    }
}
