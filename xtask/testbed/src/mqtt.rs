//! MQTT from the outside, as SPIN's tools see it: a real client (rumqttc, TCP or WebSocket at
//! `/mqtt`) subscribed to a filter, and Debian's mosquitto as an external broker.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS, Transport};
use serde_json::Value;

use crate::free_port;

/// One received MQTT message.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }

    pub fn command(&self) -> String {
        self.json()["command"].as_str().unwrap_or("").to_string()
    }
}

/// A real MQTT client subscribed to a filter; messages arrive on `msgs`.
pub struct Subscriber {
    pub client: Client,
    pub msgs: Receiver<Msg>,
}

impl Subscriber {
    /// Connects (TCP, or WebSocket at `/mqtt`) and returns once the subscription is acknowledged.
    pub fn connect(port: u16, websocket: bool, filter: &str) -> Subscriber {
        let id = format!("test-{}-{}", std::process::id(), free_port());
        let mut opts = if websocket {
            let mut o = MqttOptions::new(id, format!("ws://127.0.0.1:{port}/mqtt"), port);
            o.set_transport(Transport::Ws);
            o
        } else {
            MqttOptions::new(id, "127.0.0.1", port)
        };
        opts.set_max_packet_size(8 << 20, 8 << 20);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut conn) = Client::new(opts, 1000);
        client.subscribe(filter, QoS::AtMostOnce).unwrap();
        let (tx, msgs) = mpsc::channel();
        let (acked_tx, acked) = mpsc::channel();
        thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx
                            .send(Msg { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = acked_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        acked.recv_timeout(Duration::from_secs(20)).expect("MQTT subscription acknowledged");
        Subscriber { client, msgs }
    }

    /// Everything received until `done` says the stream is complete (or the timeout).
    pub fn collect_until(&self, what: &str, timeout: Duration, done: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
        let mut got = Vec::new();
        let end = Instant::now() + timeout;
        while !done(&got) {
            let left = end.saturating_duration_since(Instant::now());
            match self.msgs.recv_timeout(left) {
                Ok(m) => got.push(m),
                Err(_) => panic!(
                    "timed out waiting for {what}; got {} messages: {:#?}",
                    got.len(),
                    got.iter()
                        .map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload)))
                        .collect::<Vec<_>>()
                ),
            }
        }
        got
    }
}

/// A real external broker (Debian's mosquitto) on a free port; killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists()).expect(
            "this test needs Debian's mosquitto broker: apt-get install mosquitto (scripts/setup-host.sh does)",
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")).unwrap();
        let child = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        crate::wait_for("mosquitto to listen", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Mosquitto { child, port, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
