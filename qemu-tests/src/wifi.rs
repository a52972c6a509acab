//! The WiFi step of the rpi3 suite: the image's own access point on a simulated radio.
//!
//! ```text
//!  the router VM (-M virt)
//!  mac80211_hwsim radios=2
//!   wlan0 ── hostapd (spin-hostapd.service, the image's) ── br-lan 192.168.8.1 ── dnsmasq, spind
//!   wlan1 ── netns sta: wpa_supplicant (WPA2-PSK, then SAE, then a wrong passphrase, then
//!            the old and the new network after set_wifi renamed it),
//!            busybox udhcpc, nslookup, wget from the simulated internet
//! ```
//!
//! The network's settings are in `spin-admin.txt`, which the test writes onto the FAT boot
//! partition of the VM's disk before the first boot, as a user would on the SD card; the
//! station's files go into a folder beside it. Everything in the guest is run on the serial
//! console as root.

use std::fs;
use std::path::Path;
use std::time::Duration;

use runner::cmd;
use serde_json::json;

use crate::suite::{rpc, wait_until, Env, Report, FILE_SIZE, SERVER_NAME, SERVER_V4};
use crate::vm::Vm;

/// The network the settings file asks for: a name with spaces, a passphrase with spaces and a
/// country other than the board's default (NL), so each is seen to come from the file.
pub const SSID: &str = "SPIN QEMU WiFi";
pub const PASSPHRASE: &str = "qemu wifi passphrase 9";
pub const COUNTRY: &str = "DE";
const WRONG_PASSPHRASE: &str = "not the passphrase 9";
/// What the UI's WiFi dialog changes the network to (`set_wifi`), applied without a reboot.
const NEW_SSID: &str = "SPIN QEMU renamed";
const NEW_PASSPHRASE: &str = "renamed passphrase 7";
/// Where the station's files are on the boot partition (and, copied, in the guest).
const STATION_DIR: &str = "qemu-wifi";
/// On the root file system: /run is mounted noexec (by the initramfs) and the DHCP client's
/// script must run.
const GUEST_DIR: &str = "/root/qemu-wifi";
/// The DHCP host name the station sends.
const STATION_NAME: &str = "spin-wifi-phone";

/// The first-run settings file as a user writes it (with Windows line ends).
pub fn settings_file() -> String {
    format!(
        "# SPIN router first-run settings\r\nwifi_ssid={SSID}\r\nwifi_passphrase={PASSPHRASE}\r\nwifi_country={}\r\n",
        COUNTRY.to_lowercase()
    )
}

fn supplicant_conf(key_mgmt: &str, ssid: &str, passphrase: &str) -> String {
    // Channel 6 only (2437 MHz): the board's channel; a full scan costs seconds under TCG.
    let security = match key_mgmt {
        "SAE" => format!("    key_mgmt=SAE\n    sae_password=\"{passphrase}\"\n    ieee80211w=2\n"),
        _ => format!("    key_mgmt=WPA-PSK\n    psk=\"{passphrase}\"\n    proto=RSN\n    pairwise=CCMP\n"),
    };
    format!(
        "ctrl_interface=DIR={GUEST_DIR}/ctrl\nupdate_config=0\n\nnetwork={{\n    ssid=\"{ssid}\"\n    scan_ssid=1\n    scan_freq=2437\n{security}}}\n"
    )
}

/// busybox udhcpc's event script: the lease's address and default route on the station, its
/// DNS server as the station namespace's resolv.conf (`ip netns exec` mounts it), the lease
/// in a file for the test.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-24}" dev "$interface"
    set -- $router
    ip -4 route replace default via "$1" dev "$interface"
    mkdir -p /etc/netns/sta
    for d in $dns; do echo "nameserver $d"; done > /etc/netns/sta/resolv.conf
    printf 'ip=%s\nrouter=%s\ndns=%s\n' "$ip" "$1" "$dns" > /root/qemu-wifi/lease
    ;;
esac
exit 0
"#;

/// The files the test lays on the boot partition: the settings and the station's folder.
fn boot_files(dir: &Path) -> Result<Vec<String>, String> {
    let station = dir.join(STATION_DIR);
    fs::create_dir_all(&station).map_err(|e| e.to_string())?;
    let w = |p: &Path, text: &str| fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()));
    w(&dir.join("spin-admin.txt"), &settings_file())?;
    w(&station.join("psk.conf"), &supplicant_conf("WPA-PSK", SSID, PASSPHRASE))?;
    w(&station.join("sae.conf"), &supplicant_conf("SAE", SSID, PASSPHRASE))?;
    w(&station.join("wrong.conf"), &supplicant_conf("WPA-PSK", SSID, WRONG_PASSPHRASE))?;
    w(&station.join("renamed.conf"), &supplicant_conf("WPA-PSK", NEW_SSID, NEW_PASSPHRASE))?;
    w(&station.join("udhcpc.script"), UDHCPC_SCRIPT)?;
    Ok(vec![dir.join("spin-admin.txt").display().to_string(), station.display().to_string()])
}

/// The first MBR partition (the FAT boot partition): (start, length) in bytes.
pub fn boot_partition(mbr: &[u8]) -> Result<(u64, u64), String> {
    if mbr.len() < 512 || mbr[510..512] != [0x55, 0xaa] {
        return Err("the disk image has no MBR (no 55 aa signature)".into());
    }
    let e = &mbr[446..462];
    let lba = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
    let (start, sectors) = (lba(&e[8..12]), lba(&e[12..16]));
    if !matches!(e[4], 0x0b | 0x0c) || start == 0 || sectors == 0 {
        return Err(format!("the first partition is not FAT32 (type {:#04x}, start {start}, {sectors} sectors)", e[4]));
    }
    Ok((start * 512, sectors * 512))
}

/// Writes the settings file and the station's files onto the boot partition of `overlay`
/// (a qcow2 over the raw `disk`): the partition is copied out of the raw image, filled with
/// mtools, and written back into the overlay with qemu-io. The image stays untouched.
pub(crate) fn prepare_disk(disk: &Path, overlay: &Path, out: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr).map_err(|e| e.to_string())?;
    let (offset, len) = boot_partition(&mbr)?;
    let fat = out.join("wifi-boot-partition.img");
    {
        f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        let mut part = fs::File::create(&fat).map_err(|e| format!("{}: {e}", fat.display()))?;
        let copied = std::io::copy(&mut f.take(len), &mut part).map_err(|e| e.to_string())?;
        if copied != len {
            return Err(format!("the boot partition has {copied} of {len} bytes in {}", disk.display()));
        }
    }
    let files = out.join("wifi-boot-files");
    let _ = fs::remove_dir_all(&files);
    let entries = boot_files(&files)?;
    let sh = runner::shell()?;
    cmd!(sh, "mcopy -s -o -i {fat} {entries...} ::/").env("MTOOLS_SKIP_CHECK", "1").read()?;
    let write = format!("write -q -s {} {offset} {len}", fat.display());
    cmd!(sh, "qemu-io -f qcow2 -c {write} {overlay}").read()?;
    let _ = fs::remove_file(&fat);
    Ok(())
}

/// Runs `command` in the guest; its output if it exits 0, else an error with the output.
fn guest(vm: &mut Vm, command: &str, timeout: Duration) -> Result<String, String> {
    let (rc, out) = vm.shell(command, timeout)?;
    if rc != 0 {
        return Err(format!("`{command}` exited {rc}: {}", out.trim()));
    }
    Ok(out)
}

fn sta(cmd: &str) -> String {
    format!("ip netns exec sta {cmd}")
}

fn wpa_status(vm: &mut Vm) -> Result<String, String> {
    vm.shell(&sta(&format!("wpa_cli -p {GUEST_DIR}/ctrl -i wlan1 status")), Duration::from_secs(30)).map(|(_, o)| o)
}

/// Starts wpa_supplicant on the station with one of its configurations (the one before is
/// stopped, the station's address flushed).
fn start_supplicant(vm: &mut Vm, conf: &str) -> Result<(), String> {
    let _ = vm.shell(
        &format!(
            "{}; sleep 1; ip -n sta -4 addr flush dev wlan1; rm -f {GUEST_DIR}/lease",
            sta(&format!("wpa_cli -p {GUEST_DIR}/ctrl -i wlan1 terminate >/dev/null 2>&1"))
        ),
        Duration::from_secs(30),
    );
    guest(
        vm,
        &sta(&format!("wpa_supplicant -B -t -i wlan1 -c {GUEST_DIR}/{conf}.conf -f {GUEST_DIR}/{conf}.log")),
        Duration::from_secs(60),
    )?;
    Ok(())
}

/// Waits for the station to be associated and keyed; returns the key management it used.
fn associated(vm: &mut Vm, conf: &str) -> Result<String, String> {
    let mut last = String::new();
    wait_until(Duration::from_secs(120), &format!("the station ({conf}) to associate: wpa_state=COMPLETED"), || {
        last = wpa_status(vm)?;
        Ok(last.lines().any(|l| l.trim() == "wpa_state=COMPLETED").then_some(()))
    })
    .map_err(|e| format!("{e}; wpa_cli status: {}", last.trim()))?;
    let key_mgmt = last.lines().find_map(|l| l.trim().strip_prefix("key_mgmt=")).unwrap_or("").to_string();
    Ok(key_mgmt)
}

struct StationLease {
    ip: String,
    dns: String,
}

/// DHCP over the WiFi, the name through the router's resolver, the download from the
/// simulated internet (by name).
fn lease_resolve_download(vm: &mut Vm) -> Result<StationLease, String> {
    guest(
        vm,
        &sta(&format!(
            "busybox udhcpc -i wlan1 -f -q -n -t 10 -T 3 -x hostname:{STATION_NAME} -s {GUEST_DIR}/udhcpc.script >/dev/null 2>&1"
        )),
        Duration::from_secs(120),
    )
    .map_err(|e| format!("no DHCP lease over the WiFi: {e}"))?;
    let text = guest(vm, &format!("cat {GUEST_DIR}/lease"), Duration::from_secs(30))?;
    let get = |k: &str| text.lines().find_map(|l| l.trim().strip_prefix(&format!("{k}="))).unwrap_or("").to_string();
    let lease = StationLease { ip: get("ip"), dns: get("dns") };
    let last: u32 = lease.ip.strip_prefix("192.168.8.").and_then(|s| s.parse().ok()).unwrap_or(0);
    if !(100..=250).contains(&last) || get("router") != "192.168.8.1" || lease.dns != "192.168.8.1" {
        return Err(format!(
            "the WiFi lease is not the router's (pool 192.168.8.100-250, gateway and DNS 192.168.8.1): {text:?}"
        ));
    }
    let answer = guest(vm, &sta(&format!("busybox nslookup {SERVER_NAME}")), Duration::from_secs(60))
        .map_err(|e| format!("the station cannot resolve {SERVER_NAME}: {e}"))?;
    if !answer.contains(SERVER_V4) {
        return Err(format!("nslookup {SERVER_NAME} on the station: no {SERVER_V4}: {answer}"));
    }
    let size = guest(
        vm,
        &format!(
            "{} && wc -c < {GUEST_DIR}/file; rm -f {GUEST_DIR}/file",
            sta(&format!("timeout 240 busybox wget -q -O {GUEST_DIR}/file http://{SERVER_NAME}/file-2m.bin"))
        ),
        Duration::from_secs(300),
    )
    .map_err(|e| format!("the station's download failed: {e}"))?;
    if size.trim() != FILE_SIZE.to_string() {
        return Err(format!("the station downloaded {} bytes, not {FILE_SIZE}", size.trim()));
    }
    Ok(lease)
}

/// The station's node in spind (`list_devices`, as the admin from the LAN).
fn spind_device(env: &Env, mac: &str, ip: &str) -> Result<u64, String> {
    wait_until(Duration::from_secs(60), &format!("spind to list the WiFi station {mac} as a device"), || {
        let devices = rpc(env, "list_devices", json!({}))?;
        let found = devices
            .as_array()
            .and_then(|a| a.iter().find(|d| d["mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(mac))));
        Ok(found.and_then(|d| {
            let has_ip = d["ips"].as_array().is_some_and(|a| a.iter().any(|x| x == ip));
            has_ip.then(|| d["id"].as_u64()).flatten()
        }))
    })
}

/// The WiFi steps, on the running router (after the first-run setup: JSON-RPC is the admin's).
pub(crate) fn steps(env: &mut Env, report: &mut Report, password: &str) -> Result<(), String> {
    report.step(
        "WiFi: mac80211_hwsim radios=2; the image's hostapd serves wlan0 in br-lan with the boot partition's settings",
        || {
            let vm = env.vm.as_mut().unwrap();
            vm.login(password)?;
            guest(vm, "modprobe mac80211_hwsim radios=2", Duration::from_secs(120))?;
            let mut last = String::new();
            wait_until(Duration::from_secs(120), "hostapd on wlan0 to be ENABLED", || {
                last = vm
                    .shell(
                        "hostapd_cli -p /run/hostapd -i wlan0 status 2>&1; systemctl is-active spin-hostapd",
                        Duration::from_secs(30),
                    )?
                    .1;
                Ok(last.lines().any(|l| l.trim() == "state=ENABLED").then_some(()))
            })
            .map_err(|e| format!("{e}: {}", last.trim()))?;
            for want in [format!("ssid[0]={SSID}"), "channel=6".to_string()] {
                if !last.lines().any(|l| l.trim() == want) {
                    return Err(format!("hostapd status lacks {want:?}: {last}"));
                }
            }
            let master = guest(vm, "basename $(readlink /sys/class/net/wlan0/master)", Duration::from_secs(30))?;
            if master.trim() != "br-lan" {
                return Err(format!("wlan0 is not a port of br-lan (master: {:?})", master.trim()));
            }
            let conf = guest(
                vm,
                "cat /etc/spin/hostapd.conf; stat -c 'mode %a' /etc/spin/hostapd.conf",
                Duration::from_secs(30),
            )?;
            for want in [
                "wpa=2",
                "wpa_key_mgmt=WPA-PSK SAE",
                "ieee80211w=1",
                "bridge=br-lan",
                &format!("country_code={COUNTRY}"),
                "ieee80211d=1",
                &format!("wpa_passphrase={PASSPHRASE}"),
                "mode 600",
            ] {
                if !conf.lines().any(|l| l.trim() == want) {
                    return Err(format!("the generated /etc/spin/hostapd.conf lacks {want:?}:\n{conf}"));
                }
            }
            // The settings file held secrets: used and gone; the network was not generated.
            let left = guest(vm, "ls /boot/firmware/", Duration::from_secs(30))?;
            if left.contains("spin-admin.txt") || left.contains("spin-wifi.txt") {
                return Err(format!(
                    "the boot partition still has spin-admin.txt, or a generated spin-wifi.txt: {left}"
                ));
            }
            Ok(())
        },
    )?;
    let mac = report.step("WiFi: the second radio in a station namespace (sta)", || {
        let vm = env.vm.as_mut().unwrap();
        guest(
            vm,
            &format!(
                "mkdir -p {GUEST_DIR} && cp /boot/firmware/{STATION_DIR}/* {GUEST_DIR}/ && chmod 755 {GUEST_DIR}/udhcpc.script && \
                 ip netns add sta && iw phy $(cat /sys/class/net/wlan1/phy80211/name) set netns name sta && ip -n sta link set lo up"
            ),
            Duration::from_secs(60),
        )?;
        let link = guest(vm, "ip -n sta -o link show wlan1", Duration::from_secs(30))?;
        let mac = link.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).unwrap_or("").to_string();
        if mac.len() != 17 {
            return Err(format!("no MAC of wlan1 in the station namespace: {link}"));
        }
        Ok(mac)
    })?;
    report.notes.push(format!("WiFi station MAC {mac}"));

    let lease = report.step(
        "WiFi: the station associates with WPA2-PSK; DHCP lease, DNS and a download through the router",
        || {
            let vm = env.vm.as_mut().unwrap();
            start_supplicant(vm, "psk")?;
            let km = associated(vm, "psk")?;
            if km != "WPA2-PSK" {
                return Err(format!("the station associated with key_mgmt={km}, not WPA2-PSK"));
            }
            let stations = guest(vm, "hostapd_cli -p /run/hostapd -i wlan0 all_sta", Duration::from_secs(30))?;
            if !stations.to_lowercase().contains(&mac.to_lowercase()) {
                return Err(format!("hostapd does not list the station {mac}: {stations}"));
            }
            lease_resolve_download(vm)
        },
    )?;
    report.notes.push(format!("WiFi station lease {} (DNS {})", lease.ip, lease.dns));

    let node = report.step("WiFi: spind lists the station's MAC as a device (JSON-RPC list_devices)", || {
        spind_device(env, &mac, &lease.ip)
    })?;
    report.notes.push(format!("WiFi station: spind device node {node}"));

    report.step(
        "WiFi: get_wifi (the UI's WiFi dialog) shows the running network and the station with its node",
        || {
            let w = rpc(env, "get_wifi", json!({}))?;
            let client = w["clients"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(&mac))));
            let ok = w["available"] == true
                && w["running"] == true
                && w["ssid"] == SSID
                && w["broadcast_ssid"] == SSID
                && w["country"] == COUNTRY
                && client.is_some_and(|c| c["node"] == node);
            if !ok || w.to_string().contains(PASSPHRASE) {
                return Err(format!(
                    "get_wifi does not show {SSID} running with {mac} as node {node} (or shows the passphrase): {w}"
                ));
            }
            Ok(())
        },
    )?;

    report.step("WiFi: blocking the station's node stops its download; unblocking lets it through", || {
        rpc(env, "add_iplist_node", json!({"list": "block", "node": node}))?;
        let vm = env.vm.as_mut().unwrap();
        // `timeout`, not wget's -T: busybox 1.35's wget crashes with -T (exit 139), which would pass
        // for a blocked download.
        let get = sta(&format!("timeout 15 busybox wget -q -O /dev/null http://{SERVER_V4}/index.html"));
        let (rc, out) = vm.shell(&get, Duration::from_secs(120))?;
        rpc(env, "remove_iplist_node", json!({"list": "block", "node": node}))?;
        // timeout's 124: the download hung (its packets dropped); busybox's 1: refused.
        if rc == 0 || rc > 124 {
            return Err(format!("the blocked station's download did not fail as blocked (exit {rc}): {out}"));
        }
        let vm = env.vm.as_mut().unwrap();
        wait_until(Duration::from_secs(60), "the station's download to work again after the unblock", || {
            Ok((vm.shell(&get, Duration::from_secs(120))?.0 == 0).then_some(()))
        })
    })?;

    report.step(
        "WiFi: the station associates with WPA3-SAE (management frame protection); DHCP, DNS, download",
        || {
            let vm = env.vm.as_mut().unwrap();
            start_supplicant(vm, "sae")?;
            let km = associated(vm, "sae")?;
            if km != "SAE" {
                return Err(format!("the station associated with key_mgmt={km}, not SAE"));
            }
            // wpa_cli shows pmf= and the management group cipher only when PMF is in use.
            let status = wpa_status(vm)?;
            if !status.lines().any(|l| l.trim().starts_with("mgmt_group_cipher=")) {
                return Err(format!("no management frame protection with SAE: {status}"));
            }
            lease_resolve_download(vm).map(|_| ())
        },
    )?;

    report.step("WiFi: a wrong passphrase does not associate (WRONG_KEY)", || {
        let vm = env.vm.as_mut().unwrap();
        start_supplicant(vm, "wrong")?;
        wait_until(Duration::from_secs(180), "wpa_supplicant to report the wrong key (reason=WRONG_KEY)", || {
            let (_, log) =
                vm.shell(&format!("grep -c 'reason=WRONG_KEY' {GUEST_DIR}/wrong.log"), Duration::from_secs(30))?;
            Ok((log.trim().parse::<u32>().unwrap_or(0) > 0).then_some(()))
        })?;
        let status = wpa_status(vm)?;
        if status.lines().any(|l| l.trim() == "wpa_state=COMPLETED") {
            return Err(format!("the station with a wrong passphrase is associated: {status}"));
        }
        let _ = vm.shell(&sta(&format!("wpa_cli -p {GUEST_DIR}/ctrl -i wlan1 terminate")), Duration::from_secs(30));
        Ok(())
    })?;

    report.step(
        "WiFi: set_wifi (the UI's WiFi dialog) renames the network and changes its passphrase without a reboot",
        || {
            let r = rpc(env, "set_wifi", json!({"ssid": NEW_SSID, "passphrase": NEW_PASSPHRASE}))?;
            if r["applied"] != true || !r["message"].as_str().unwrap_or("").contains("must reconnect") {
                return Err(format!("set_wifi: {r}"));
            }
            let vm = env.vm.as_mut().unwrap();
            let mut last = String::new();
            // spin-wifi-apply.path sees the file change and restarts spin-hostapd.
            wait_until(Duration::from_secs(120), "hostapd to broadcast the new name", || {
                last = vm.shell("hostapd_cli -p /run/hostapd -i wlan0 status 2>&1", Duration::from_secs(30))?.1;
                let lines: Vec<&str> = last.lines().map(str::trim).collect();
                Ok((lines.contains(&"state=ENABLED") && lines.contains(&format!("ssid[0]={NEW_SSID}").as_str()))
                    .then_some(()))
            })
            .map_err(|e| format!("{e}: {}", last.trim()))?;
            let conf = guest(vm, "cat /etc/spin/hostapd.conf", Duration::from_secs(30))?;
            if !conf.lines().any(|l| l.trim() == format!("wpa_passphrase={NEW_PASSPHRASE}")) {
                return Err(format!("hostapd.conf lacks the new passphrase:\n{conf}"));
            }
            let w = rpc(env, "get_wifi", json!({}))?;
            if w["running"] != true || w["broadcast_ssid"] != NEW_SSID {
                return Err(format!("get_wifi after the change: {w}"));
            }
            Ok(())
        },
    )?;

    report.step("WiFi: the old settings no longer associate; the new name and passphrase do, with a lease", || {
        let vm = env.vm.as_mut().unwrap();
        start_supplicant(vm, "psk")?;
        // Several scans on channel 6 (seconds each under TCG) without the old network.
        std::thread::sleep(Duration::from_secs(20));
        let status = wpa_status(vm)?;
        if status.lines().any(|l| l.trim() == "wpa_state=COMPLETED") {
            return Err(format!("the station associated with the old name and passphrase: {status}"));
        }
        start_supplicant(vm, "renamed")?;
        let km = associated(vm, "renamed")?;
        if km != "WPA2-PSK" {
            return Err(format!("the station associated with key_mgmt={km}, not WPA2-PSK"));
        }
        lease_resolve_download(vm)?;
        let _ = vm.shell(&sta(&format!("wpa_cli -p {GUEST_DIR}/ctrl -i wlan1 terminate")), Duration::from_secs(30));
        Ok(())
    })?;
    Ok(())
}

/// The console line of a network the first boot made (`SPIN-WIFI network: SPIN-XXXX
/// passphrase: P (country CC)`): its name and passphrase, if it is one.
pub(crate) fn generated_network(line: &str) -> Result<(String, String), String> {
    let bad = || format!("not the console line of a generated network (SPIN-XXXX, 16-character passphrase): {line:?}");
    let rest = line.split("SPIN-WIFI network: ").nth(1).ok_or_else(bad)?;
    let (ssid, rest) = rest.split_once(" passphrase: ").ok_or_else(bad)?;
    let (pass, _) = rest.split_once(" (country ").ok_or_else(bad)?;
    let ok = ssid.len() == 9
        && ssid.starts_with("SPIN-")
        && ssid[5..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && pass.len() == 16
        && pass.chars().all(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(bad());
    }
    Ok((ssid.to_string(), pass.to_string()))
}

/// Keeps the station's logs and hostapd's journal with the artifacts.
pub(crate) fn artifacts(vm: &mut Vm, out: &Path) {
    if let Ok((_, text)) = vm.shell(
        &format!("for f in {GUEST_DIR}/*.log; do echo \"== $f\"; cat \"$f\"; done; echo '== journal'; journalctl -b --no-pager -u spin-hostapd -u spin-firstboot | tail -n 300"),
        Duration::from_secs(60),
    ) {
        let _ = fs::write(out.join("wifi.log"), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_partition_is_found_in_the_mbr() {
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert!(boot_partition(&mbr).unwrap_err().contains("not FAT32"));
        mbr[446 + 4] = 0x0c;
        mbr[446 + 8..446 + 12].copy_from_slice(&8192u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&524288u32.to_le_bytes());
        assert_eq!(boot_partition(&mbr).unwrap(), (8192 * 512, 256 << 20));
        mbr[511] = 0;
        assert!(boot_partition(&mbr).unwrap_err().contains("no MBR"));
    }

    #[test]
    fn the_console_line_of_a_generated_network() {
        let (ssid, pass) =
            generated_network("SPIN-WIFI network: SPIN-7K3Q passphrase: abcdEFGH2345jkmn (country NL)\r").unwrap();
        assert_eq!((ssid.as_str(), pass.as_str()), ("SPIN-7K3Q", "abcdEFGH2345jkmn"));
        assert!(generated_network("SPIN-WIFI network: Home passphrase: as in the settings file (country DE)").is_err());
        assert!(generated_network("").is_err());
    }

    #[test]
    fn the_settings_and_station_files() {
        assert!(UDHCPC_SCRIPT.contains(&format!("> {GUEST_DIR}/lease")));
        let s = settings_file();
        assert!(s.contains("wifi_ssid=SPIN QEMU WiFi\r\n") && s.contains("wifi_country=de\r\n"));
        let sae = supplicant_conf("SAE", SSID, PASSPHRASE);
        assert!(
            sae.contains("key_mgmt=SAE") && sae.contains("ieee80211w=2") && sae.contains("ssid=\"SPIN QEMU WiFi\"")
        );
        let psk = supplicant_conf("WPA-PSK", NEW_SSID, WRONG_PASSPHRASE);
        assert!(psk.contains(&format!("ssid=\"{NEW_SSID}\"")));
        assert!(psk.contains("key_mgmt=WPA-PSK") && psk.contains(&format!("psk=\"{WRONG_PASSPHRASE}\"")));
    }
}
