//! The vendor file reader against good and bad files, the random-MAC flag, the type guess and
//! the user's types file.

use super::*;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// A vendor file written by hand from (OUI, name index) entries and names.
fn file(entries: &[([u8; 3], u16)], names: &[&str]) -> Vec<u8> {
    let mut b = OUI_MAGIC.to_vec();
    b.extend((entries.len() as u32).to_le_bytes());
    b.extend((names.len() as u32).to_le_bytes());
    for (oui, idx) in entries {
        b.extend(oui);
        b.extend(idx.to_le_bytes());
    }
    for n in names {
        b.push(n.len() as u8);
        b.extend(n.as_bytes());
    }
    b
}

fn sample() -> Vec<u8> {
    file(&[([0x00, 0x17, 0x88], 1), ([0x3c, 0x22, 0xfb], 0), ([0xb8, 0x27, 0xeb], 1)], &["Apple", "Signify"])
}

#[test]
fn random_mac_is_the_locally_administered_unicast_bit() {
    assert!(is_random_mac(&mac("02:00:5e:00:00:01")));
    assert!(is_random_mac(&mac("da:a1:19:12:34:56")));
    assert!(!is_random_mac(&mac("3c:22:fb:12:34:56")));
    // Multicast with the local bit set is a group, not a device's made-up address.
    assert!(!is_random_mac(&mac("03:00:00:00:00:01")));
}

#[test]
fn a_registered_oui_has_its_vendor() {
    let t = OuiTable::parse(sample()).unwrap();
    assert_eq!(t.prefixes(), 3);
    assert_eq!(t.vendor(&mac("3c:22:fb:01:02:03")), Some("Apple"));
    assert_eq!(t.vendor(&mac("00:17:88:aa:bb:cc")), Some("Signify"));
    assert_eq!(t.vendor(&mac("b8:27:eb:00:00:00")), Some("Signify"));
    assert_eq!(t.vendor(&mac("00:17:89:aa:bb:cc")), None);
    assert_eq!(t.vendor(&mac("ff:ff:fc:00:00:00")), None);
}

#[test]
fn a_random_mac_has_no_vendor_even_if_its_bytes_are_registered() {
    let t = OuiTable::parse(file(&[([0x02, 0x60, 0x8c], 0)], &["3Com"])).unwrap();
    assert_eq!(t.vendor(&mac("02:60:8c:00:00:01")), None);
}

#[test]
fn bad_files_are_refused_not_panicked_on() {
    let good = sample();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("wrong magic", b"SPINOUI2\0\0\0\0\0\0\0\0".to_vec()),
        ("out of order", file(&[([0, 0, 2], 0), ([0, 0, 1], 0)], &["A"])),
        ("duplicate", file(&[([0, 0, 1], 0), ([0, 0, 1], 0)], &["A"])),
        ("index past the names", file(&[([0, 0, 1], 1)], &["A"])),
        ("empty name", file(&[([0, 0, 1], 0)], &[""])),
        ("trailing bytes", [good.clone(), vec![0]].concat()),
        ("too large", vec![0; OUI_FILE_MAX as usize + 1]),
    ];
    let mut huge_count = good.clone();
    huge_count[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("entry count past the end", huge_count));
    let mut huge_names = good.clone();
    huge_names[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("name count past the end", huge_names));
    let mut bad_utf8 = good.clone();
    let last = bad_utf8.len() - 1;
    bad_utf8[last] = 0xff;
    cases.push(("not UTF-8", bad_utf8));
    for cut in [1, 7, 15, 17, 30, good.len() - 1] {
        cases.push(("cut short", good[..cut].to_vec()));
    }
    for (what, data) in cases {
        assert!(OuiTable::parse(data).is_err(), "{what} was accepted");
    }
    assert!(OuiTable::parse(good).is_ok());
}

#[test]
fn load_refuses_a_file_over_the_limit_and_reads_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let mut data = sample();
    data.resize(OUI_FILE_MAX as usize + 10, 0);
    std::fs::write(&big, data).unwrap();
    assert!(OuiTable::load(&big).unwrap_err().contains("more than"));
    let good = dir.path().join("oui.bin");
    std::fs::write(&good, sample()).unwrap();
    assert_eq!(OuiTable::load(&good).unwrap().vendor(&mac("3c:22:fb:00:00:01")), Some("Apple"));
    assert!(OuiTable::load(&dir.path().join("missing")).is_err());
}

#[test]
fn the_type_guess_reads_host_names_vendors_and_looked_up_names() {
    let none: [&str; 0] = [];
    assert_eq!(guess_type(Some("Janes-iPhone"), Some("Apple"), none), Some(DeviceType::Phone));
    assert_eq!(guess_type(Some("DESKTOP-4KQ2J1"), None, none), Some(DeviceType::Laptop));
    assert_eq!(guess_type(Some("Chromecast-Ultra"), Some("Google"), none), Some(DeviceType::Tv));
    assert_eq!(guess_type(None, Some("Sonos"), none), Some(DeviceType::Speaker));
    assert_eq!(guess_type(None, Some("Nintendo"), none), Some(DeviceType::Console));
    assert_eq!(guess_type(None, Some("Espressif"), none), Some(DeviceType::Iot));
    assert_eq!(guess_type(None, Some("Hangzhou Hikvision Digital"), none), Some(DeviceType::Camera));
    assert_eq!(guess_type(None, Some("Brother Industries"), none), Some(DeviceType::Printer));
    assert_eq!(guess_type(None, None, ["www.example", "ctest.cdn.nintendo.net"]), Some(DeviceType::Console));
    // A name that merely ends like a hint domain says nothing.
    assert_eq!(guess_type(None, None, ["notnintendo.net"]), None);
    // The host name beats the vendor: an Apple laptop.
    assert_eq!(guess_type(Some("Bobs-MacBook-Pro"), Some("Apple"), none), Some(DeviceType::Laptop));
    assert_eq!(guess_type(Some("kitchen"), Some("Apple"), ["www.example"]), None);
    assert_eq!(guess_type(None, None, none), None);
}

#[test]
fn device_types_round_trip_and_bad_lines_are_skipped() {
    let text = "02:00:5e:00:00:01 console\n# a comment\n3c:22:fb:00:00:01 phone\nnot-a-mac tv\n\
                3c:22:fb:00:00:02 toaster\n3c:22:fb:00:00:03 tv extra\n";
    let (types, warnings) = parse_device_types(text);
    assert_eq!(types.len(), 2);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert_eq!(types[&mac("02:00:5e:00:00:01")], DeviceType::Console);
    let again = parse_device_types(&device_types_text(&types)).0;
    assert_eq!(again, types);
    for t in DeviceType::ALL {
        assert_eq!(DeviceType::parse(t.name()), Some(t));
    }
    assert_eq!(DeviceType::parse("Phone"), None);
}

/// The table built in from the build host's IEEE registry (ieee-data, which `cargo xtask setup`
/// installs) knows the whole registry. Without the registry the build embeds none and says so;
/// this test then fails under CI and is reported as skipped elsewhere.
#[test]
fn the_built_in_table_is_the_whole_registry() {
    let t = OuiTable::builtin().expect("the built-in table is well-formed");
    if t.prefixes() == 0 {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "spind was built without ieee-data's oui.txt");
        eprintln!("SKIP the_built_in_table_is_the_whole_registry: built without /usr/share/ieee-data/oui.txt");
        return;
    }
    assert!(t.prefixes() > 30_000, "{} prefixes", t.prefixes());
    assert_eq!(t.vendor(&mac("00:1f:32:01:02:03")), Some("Nintendo"));
    assert_eq!(t.vendor(&mac("f4:bd:9e:00:00:01")), Some("Cisco"));
    assert_eq!(t.vendor(&mac("b8:27:eb:00:00:01")), Some("Raspberry Pi"));
}
