//! Network load for the benchmarks and the fault tests: many UDP flows kept alive at once from
//! one namespace, each flow one datagram a second, sent through a raw socket (so 50,000 flows
//! need no 50,000 sockets).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::spawn_in_netns;

/// `n` UDP flows: flow i is from `sources[i % len]:(10000 + i / len)` to
/// `dst:(dst_port + i % dst_ports)`.
#[derive(Clone, Debug)]
pub struct Flows {
    pub sources: Vec<Ipv4Addr>,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    pub dst_ports: u32,
    pub n: u32,
}

/// An IPv4 + UDP datagram with a 32-byte payload; the kernel fills in the IP checksum and id.
pub fn udp_packet(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> [u8; 60] {
    let mut p = [0u8; 60];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&60u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&40u16.to_be_bytes());
    // UDP checksum 0: none (allowed for IPv4).
    p
}

/// Keeps `flows` alive from namespace `ns` until `stop`, each flow once a second, spread evenly
/// over 1,000 slots of 1 ms; `count` follows the datagrams sent. Ends with the number sent, or
/// an error if more than 1% of the sends failed.
pub fn send_flows(
    ns: &str,
    flows: Flows,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> JoinHandle<Result<u64, String>> {
    spawn_in_netns(ns, move || {
        // SAFETY: plain socket syscall; IPPROTO_RAW implies IP_HDRINCL.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
        }
        let k = flows.sources.len() as u32;
        let packets: Vec<[u8; 60]> = (0..flows.n)
            .map(|i| {
                udp_packet(
                    flows.sources[(i % k) as usize],
                    10_000 + (i / k) as u16,
                    flows.dst,
                    flows.dst_port + (i % flows.dst_ports) as u16,
                )
            })
            .collect();
        // SAFETY: zeroed sockaddr_in is valid; fields set below.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(flows.dst).to_be();
        let start = Instant::now();
        let (mut sent, mut errors) = (0u64, 0u64);
        'outer: for second in 0u64.. {
            for slot in 0..1000u64 {
                if stop.load(Ordering::Relaxed) {
                    break 'outer;
                }
                let lo = (slot * u64::from(flows.n) / 1000) as usize;
                let hi = ((slot + 1) * u64::from(flows.n) / 1000) as usize;
                for p in &packets[lo..hi] {
                    // SAFETY: valid buffer and address for the duration of the call.
                    let r = unsafe {
                        libc::sendto(
                            fd,
                            p.as_ptr().cast(),
                            p.len(),
                            0,
                            (&sa as *const libc::sockaddr_in).cast(),
                            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        )
                    };
                    if r < 0 {
                        errors += 1;
                    } else {
                        sent += 1;
                    }
                }
                count.store(sent, Ordering::Relaxed);
                let due = start + Duration::from_micros(second * 1_000_000 + (slot + 1) * 1000);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
        }
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        if errors > sent / 100 {
            return Err(format!("flow sender: {errors} send errors, {sent} sent"));
        }
        Ok(sent)
    })
}
