//! `cargo xtask oui [IN [OUT]]`: the vendor table spind embeds (`spind/build/oui_table.rs`,
//! shared with spind's `build.rs`) written as a file, for `oui_file` (another or newer registry
//! than the one spind was built with).

use anyhow::{anyhow, Context, Result};

#[path = "../../../spind/build/oui_table.rs"]
mod table;
pub use table::*;

/// `cargo xtask oui [IN [OUT]]`: IN defaults to ieee-data's oui.txt, OUT to `oui.bin`.
pub fn generate_file(input: &std::path::Path, output: &std::path::Path) -> Result<usize> {
    let raw =
        std::fs::read(input).with_context(|| format!("reading {} (apt-get install ieee-data)", input.display()))?;
    let data = generate(&String::from_utf8_lossy(&raw)).map_err(|e| anyhow!("{}: {e}", input.display()))?;
    std::fs::write(output, &data).with_context(|| format!("writing {}", output.display()))?;
    Ok(data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// oui.txt's real format: CRLF lines, a header, `(hex)` and `(base 16)` lines, addresses.
    const SAMPLE: &str =
        "OUI/MA-L                                                    Organization                                 \r\n\
company_id                                                  Organization                                 \r\n\
                                                            Address                                      \r\n\
\r\n\
00-22-72   (hex)\t\tAmerican Micro-Fuel Device Corp.\r\n\
002272     (base 16)\t\tAmerican Micro-Fuel Device Corp.\r\n\
\t\t\t\t2181 Buchanan Loop\r\n\
\t\t\t\tFerndale  WA  98248\r\n\
\t\t\t\tUS\r\n\
\r\n\
F4-BD-9E   (hex)\t\tCisco Systems, Inc\r\n\
F4BD9E     (base 16)\t\tCisco Systems, Inc\r\n\
\t\t\t\t80 West Tasman Drive\r\n\
\r\n\
00-1F-32   (hex)\t\tNintendo Co., Ltd.\r\n\
001F32     (base 16)\t\tNintendo Co., Ltd.\r\n\
\r\n\
98-B6-E9   (hex)\t\tNintendo Co.,Ltd\r\n\
98B6E9     (base 16)\t\tNintendo Co.,Ltd\r\n\
\r\n\
14-F6-5A   (hex)\t\tXiaomi Communications Co Ltd\r\n\
\r\n\
58-85-E9   (hex)\t\tRealme Chongqing MobileTelecommunications Corp Ltd\r\n\
\r\n\
1C-1B-0D   (hex)\t\tGIGA-BYTE TECHNOLOGY CO.,LTD.\r\n";

    #[test]
    fn names_lose_their_legal_suffixes_and_are_capped() {
        assert_eq!(short_name("Samsung Electronics Co.,LTD"), "Samsung");
        assert_eq!(short_name("Cisco Systems, Inc"), "Cisco");
        assert_eq!(short_name("Telink Semiconductor (Shanghai) Co., Ltd."), "Telink Semiconductor");
        assert_eq!(short_name("IGT"), "IGT");
        // Never down to nothing: a one-word name stays.
        assert_eq!(short_name("Limited"), "Limited");
        let long = short_name("Realme Chongqing MobileTelecommunications Corp Ltd");
        assert!(long.len() <= NAME_MAX && "Realme Chongqing".starts_with(&long) && !long.is_empty(), "{long}");
        // A cut never splits a character.
        assert!(short_name("ÄÖÜÄÖÜÄÖÜÄÖÜÄÖÜÄÖÜÄÖÜ").len() <= NAME_MAX);
    }

    #[test]
    fn the_sample_becomes_a_sorted_deduplicated_table() {
        let entries = parse_oui_txt(SAMPLE);
        assert_eq!(entries.len(), 7, "{entries:?}");
        assert_eq!(entries[&[0xF4, 0xBD, 0x9E]], "Cisco");
        assert_eq!(entries[&[0x00, 0x1F, 0x32]], "Nintendo");
        let data = generate(SAMPLE).unwrap();
        assert_eq!(&data[..8], b"SPINOUI1");
        let n = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
        let m = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
        assert_eq!(n, 7);
        // The two Nintendo OUIs share one name.
        assert_eq!(m, 6);
        let ouis: Vec<&[u8]> = (0..n).map(|i| &data[16 + i * 5..16 + i * 5 + 3]).collect();
        assert!(ouis.windows(2).all(|w| w[0] < w[1]), "{ouis:?}");
        let idx = |oui: [u8; 3]| {
            let i = ouis.iter().position(|o| *o == oui).unwrap();
            u16::from_le_bytes([data[16 + i * 5 + 3], data[16 + i * 5 + 4]])
        };
        assert_eq!(idx([0x00, 0x1F, 0x32]), idx([0x98, 0xB6, 0xE9]));
        // Names follow the table, each once, length-prefixed; nothing after the last.
        let mut at = 16 + 5 * n;
        let mut names = Vec::new();
        for _ in 0..m {
            let len = data[at] as usize;
            names.push(std::str::from_utf8(&data[at + 1..at + 1 + len]).unwrap().to_string());
            at += 1 + len;
        }
        assert_eq!(at, data.len());
        assert_eq!(names[idx([0x98, 0xB6, 0xE9]) as usize], "Nintendo");
        assert!(names.contains(&"GIGA-BYTE".to_string()), "{names:?}");
    }

    #[test]
    fn a_file_without_registry_lines_is_refused() {
        assert!(generate("hello\nworld\n").is_err());
        assert!(generate("00-22   (hex)\tShort\nZZ-22-72   (hex)\tBad hex\n").is_err());
    }

    /// The real registry, where ieee-data is installed (`cargo xtask setup` installs it): under
    /// the 400 KB the issue allows.
    #[test]
    fn the_whole_registry_fits_in_400_kb() {
        let Ok(text) = std::fs::read(IEEE_OUI_TXT) else {
            assert!(std::env::var("CI").is_err(), "{IEEE_OUI_TXT} is missing under CI (cargo xtask setup)");
            eprintln!("skipped: {IEEE_OUI_TXT} missing (apt-get install ieee-data)");
            return;
        };
        let data = generate(&String::from_utf8_lossy(&text)).unwrap();
        assert!(data.len() < 400_000, "{} bytes", data.len());
        assert!(parse_oui_txt(&String::from_utf8_lossy(&text)).len() > 30_000);
    }
}
