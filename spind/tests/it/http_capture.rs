//! Per-device packet capture over HTTP (`/spin_api/tcpdump_start|stop|status`) against the real
//! binary, in network namespaces (needs root): spind runs in namespace A, which is linked by
//! veth pairs to B (the device whose MAC is captured) and C (another device).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

use testbed::netns::{ns_cmd, shell, Netns};
use testbed::runner::{Shell, Stream};

use crate::common;

const DEV: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x01];
const OTHER: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x02];
const DEV_S: &str = "02:5e:00:00:00:01";
const PORT: u16 = 13026;

fn sh(args: &[&str]) {
    testbed::netns::sh(args);
}

/// Three namespaces of the test bed, deleted on drop.
struct Net {
    a: String,
    b: String,
    c: String,
    shell: Shell,
    _ns: [Netns; 3],
}

impl Net {
    fn new() -> Net {
        let ns = [Netns::new("capa"), Netns::new("capb"), Netns::new("capc")];
        let (a, b, c) = (ns[0].name.clone(), ns[1].name.clone(), ns[2].name.clone());
        let n = Net { a, b, c, shell: shell(), _ns: ns };
        for (peer, ifa, ifb, mac, net) in
            [(&n.b, "va", "vb", DEV_S, "10.77.1"), (&n.c, "vc", "vd", "02:5e:00:00:00:02", "10.77.2")]
        {
            sh(&["ip", "-n", &n.a, "link", "add", ifa, "type", "veth", "peer", "name", ifb, "netns", peer]);
            sh(&["ip", "-n", peer, "link", "set", ifb, "address", mac]);
            sh(&["ip", "-n", &n.a, "addr", "add", &format!("{net}.1/24"), "dev", ifa]);
            sh(&["ip", "-n", peer, "addr", "add", &format!("{net}.2/24"), "dev", ifb]);
            sh(&["ip", "-n", &n.a, "link", "set", ifa, "up"]);
            sh(&["ip", "-n", peer, "link", "set", ifb, "up"]);
        }
        n
    }

    fn exec(&self, ns: &str, args: &[&str]) -> testbed::runner::Cmd<'_> {
        ns_cmd(&self.shell, ns, args[0]).args(&args[1..])
    }

    fn curl(&self, path: &str) -> String {
        let out = self
            .exec(&self.a, &["curl", "-s", "--max-time", "10", &format!("http://127.0.0.1:{PORT}{path}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.curl(&format!("/spin_api/tcpdump_status?device={DEV_S}"))).unwrap_or_default()
    }

    fn ping(&self, ns: &str, to: &str) {
        let out = self.exec(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to]).output().unwrap();
        assert!(out.status.success(), "ping {to} from {ns}: {}", String::from_utf8_lossy(&out.stdout));
    }

    fn start_download(&self, file: &Path) -> Child {
        self.exec(&self.a, &["curl", "-sN", "-o"])
            .arg(file)
            .arg(format!("http://127.0.0.1:{PORT}/spin_api/tcpdump_start?device={DEV_S}"))
            .spawn(Stream::Null, Stream::Null)
            .unwrap()
    }
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_capture_streams_one_devices_frames_until_it_is_stopped() {
    if !testbed::root_or_skip("a_capture_streams_one_devices_frames_until_it_is_stopped") {
        return;
    }
    let net = Net::new();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("spind.conf");
    std::fs::write(
        &conf,
        format!(
            "log_usesyslog = 0\nlog_loglevel = 7\nstate_dir = {}\nspinweb_port = {PORT}\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("spind.log");
    let mut spind = net
        .exec(&net.a, &[common::SPIND, "-P", "-e"])
        .arg(dir.path().join("extsrc.sock"))
        .arg("-c")
        .arg(&conf)
        .arg("-j")
        .arg(dir.path().join("rpc.sock"))
        .spawn(Stream::Null, Stream::File(std::fs::File::create(&log).unwrap()))
        .unwrap();
    struct Kill<'a>(&'a mut Child, &'a Path);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            if std::thread::panicking() {
                eprintln!("---- spind log ----\n{}", std::fs::read_to_string(self.1).unwrap_or_default());
            }
        }
    }
    let _guard = Kill(&mut spind, &log);
    wait("spind's web server in the namespace", 20, || net.curl("/spin_api/jsonrpc").contains("POST"));
    assert_eq!(net.status()["running"], false);

    // Capture, traffic from both devices, stop.
    let file = dir.path().join("dev.pcap");
    let mut curl = net.start_download(&file);
    wait("the capture to run", 10, || net.status()["running"] == true);
    net.ping(&net.b, "10.77.1.1");
    net.ping(&net.c, "10.77.2.1");
    let running = net.status();
    assert!(running["bytes"].as_i64().unwrap() > 24, "{running}");
    assert_eq!(net.curl(&format!("/spin_api/tcpdump_stop?device={DEV_S}")), "");
    wait("the download to end after stop", 10, || curl.try_wait().unwrap().is_some());
    let st = net.status();
    assert_eq!(st["running"], false);

    let data = std::fs::read(&file).unwrap();
    assert_eq!(st["bytes"].as_u64().unwrap(), data.len() as u64, "status counts the bytes sent");
    let mut reader = PcapReader::new(&data[..]).expect("a pcap file");
    assert_eq!(reader.header().snaplen, 1600);
    assert_eq!(reader.header().datalink, pcap_file::DataLink::ETHERNET);
    let (mut frames, mut requests, mut replies) = (0, 0, 0);
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        let d = &p.data;
        frames += 1;
        assert!(d[0..6] == DEV || d[6..12] == DEV, "a frame not of the device: {:02x?}", &d[..12]);
        assert!(d[0..6] != OTHER && d[6..12] != OTHER, "a frame of the other device");
        // IPv4 ICMP echo request from the device / reply to it.
        if d.len() > 34 && d[12..14] == [8, 0] && d[23] == 1 {
            match (d[34], d[6..12] == DEV) {
                (8, true) => requests += 1,
                (0, false) => replies += 1,
                _ => {}
            }
        }
    }
    assert!(requests >= 3 && replies >= 3, "{frames} frames, {requests} requests, {replies} replies");

    // A client that goes away ends its capture (noticed at the next frame).
    let mut curl = net.start_download(&dir.path().join("gone.pcap"));
    wait("the second capture to run", 10, || net.status()["running"] == true);
    let _ = curl.kill();
    let _ = curl.wait();
    wait("the capture of a vanished client to end", 15, || {
        net.ping(&net.b, "10.77.1.1");
        net.status()["running"] == false
    });

    // A new start for the same device replaces a running capture.
    let mut first = net.start_download(&dir.path().join("first.pcap"));
    wait("the third capture to run", 10, || net.status()["running"] == true);
    let mut second = net.start_download(&dir.path().join("second.pcap"));
    wait("the first download to end when replaced", 10, || first.try_wait().unwrap().is_some());
    assert_eq!(net.status()["running"], true);
    net.curl(&format!("/spin_api/tcpdump_stop?device={DEV_S}"));
    wait("the second download to end", 10, || second.try_wait().unwrap().is_some());
}
