//! MQTT from the outside, as SPIN's tools see it: a real client (rumqttc, TCP or WebSocket at
//! `/mqtt`) subscribed to a filter, and Debian's mosquitto as an external broker.
//!
//! [`Subscription::run`] is the one client loop: it subscribes after every (re)connection, so
//! it follows a broker that restarts (a router that reboots), and reports each event with the
//! time it arrived. [`Subscriber`] runs it on a thread for tests and benchmarks; the QEMU tests
//! run it in their `mqtt-sub` helper inside the LAN namespace.

use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{Client, Connection, Event as MqttEvent, MqttOptions, Packet, QoS, Transport};
use runner::{cmd, Stream};
use serde_json::Value;

use crate::free_port;

/// One received MQTT message.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// When the client received it (CLOCK_REALTIME, comparable with other processes' stamps).
    pub received: SystemTime,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }

    pub fn command(&self) -> String {
        self.json()["command"].as_str().unwrap_or("").to_string()
    }
}

/// What a subscription sees, in order.
#[derive(Clone, Debug)]
pub enum Event {
    /// The broker accepted the connection (CONNACK); the subscription request follows.
    Connected,
    /// The broker acknowledged the subscription (SUBACK).
    Subscribed,
    Message(Msg),
    /// The connection failed or broke; the client retries.
    Error(String),
}

/// Where and what to subscribe to.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub host: String,
    pub port: u16,
    /// WebSocket at `ws://HOST:PORT/mqtt` instead of plain TCP.
    pub websocket: bool,
    pub filter: String,
    pub keep_alive: Duration,
    /// Pause after a connection error before the next attempt.
    pub retry: Duration,
    /// User name and password for the CONNECT (a broker on a LAN address needs the admin's).
    pub login: Option<(String, String)>,
}

impl Subscription {
    /// `filter` on 127.0.0.1 (as seen from the calling thread's namespace).
    pub fn local(port: u16, websocket: bool, filter: &str) -> Subscription {
        Subscription {
            host: "127.0.0.1".into(),
            port,
            websocket,
            filter: filter.into(),
            keep_alive: Duration::from_secs(30),
            retry: Duration::from_millis(100),
            login: None,
        }
    }

    /// Runs the client on this thread with client id `id`, calling `on` with every event until
    /// it returns false. Subscribes again after every (re)connection.
    pub fn run(&self, id: &str, on: impl FnMut(Event) -> bool) {
        let (client, conn) = self.client(id);
        self.drive(&client, conn, on);
    }

    fn client(&self, id: &str) -> (Client, Connection) {
        let mut opts = if self.websocket {
            let mut o = MqttOptions::new(id, format!("ws://{}:{}/mqtt", self.host, self.port), self.port);
            o.set_transport(Transport::Ws);
            o
        } else {
            MqttOptions::new(id, self.host.clone(), self.port)
        };
        opts.set_max_packet_size(8 << 20, 8 << 20);
        if let Some((user, password)) = &self.login {
            opts.set_credentials(user.clone(), password.clone());
        }
        opts.set_keep_alive(self.keep_alive);
        Client::new(opts, 1000)
    }

    fn drive(&self, client: &Client, mut conn: Connection, mut on: impl FnMut(Event) -> bool) {
        for ev in conn.iter() {
            let event = match ev {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    if let Err(e) = client.try_subscribe(self.filter.clone(), QoS::AtMostOnce) {
                        on(Event::Error(e.to_string()));
                        return;
                    }
                    Event::Connected
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => Event::Subscribed,
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => Event::Message(Msg {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                    received: SystemTime::now(),
                }),
                Ok(_) => continue,
                Err(e) => {
                    let go_on = on(Event::Error(e.to_string()));
                    thread::sleep(self.retry);
                    if go_on {
                        continue;
                    }
                    return;
                }
            };
            if !on(event) {
                return;
            }
        }
    }
}

/// A real MQTT client subscribed to a filter; messages arrive on `msgs`, and `client` can
/// publish.
pub struct Subscriber {
    pub client: Client,
    pub msgs: Receiver<Msg>,
    /// The client thread stops retrying once this is gone (a dropped subscriber of a broker that
    /// went away would otherwise retry for ever).
    _alive: Arc<()>,
}

impl Subscriber {
    /// Connects (TCP, or WebSocket at `/mqtt`) to 127.0.0.1 and returns once the subscription
    /// is acknowledged.
    pub fn connect(port: u16, websocket: bool, filter: &str) -> Subscriber {
        Subscriber::start(Subscription::local(port, websocket, filter))
    }

    /// Runs `sub` on a thread (in the caller's namespace) and returns once the first
    /// subscription is acknowledged. The thread ends when `msgs` is dropped.
    pub fn start(sub: Subscription) -> Subscriber {
        let id = format!("test-{}-{}", std::process::id(), free_port());
        let (client, conn) = sub.client(&id);
        let (tx, msgs) = mpsc::channel();
        let (acked_tx, acked) = mpsc::channel();
        let c2 = client.clone();
        let alive = Arc::new(());
        let watched = Arc::downgrade(&alive);
        thread::spawn(move || {
            sub.drive(&c2, conn, |ev| match ev {
                Event::Message(m) => tx.send(m).is_ok(),
                Event::Subscribed => {
                    let _ = acked_tx.send(());
                    true
                }
                Event::Connected => true,
                Event::Error(_) => watched.strong_count() > 0,
            })
        });
        acked.recv_timeout(Duration::from_secs(20)).expect("MQTT subscription acknowledged");
        Subscriber { client, msgs, _alive: alive }
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
        let shell = crate::netns::shell();
        let child = cmd!(shell, "{bin} -c {conf}").spawn(Stream::Null, Stream::Null).unwrap_or_else(|e| panic!("{e}"));
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
