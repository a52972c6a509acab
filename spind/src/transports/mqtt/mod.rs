//! The MQTT side of spind: either an embedded broker (rumqttd, replacing the mosquitto that SPIN
//! spawned) or a client of an external broker (rumqttc).
//!
//! Both modes look the same to the rest of the daemon: [`start`] returns an [`MqttHandle`] whose
//! `publish` channel takes the core's [`Publish`]es (sent with QoS 0, in order), and every request
//! that arrives on `SPIN/jsonrpc/q` is forwarded to the core as
//! `Input::Rpc { reply: RpcReply::Mqtt, .. }`; the core publishes the answer on `SPIN/jsonrpc/a`.
//!
//! Embedded mode: an MQTT 3.1.1 TCP listener on `host:port` (spind's own side, tools) and one
//! MQTT-over-WebSocket listener per `websocket_hosts` entry (browsers, `ws://host:1884/mqtt`).
//! spind itself talks to the broker through rumqttd's in-process link, so it never depends on
//! its own TCP listener. Who may connect and publish is decided in [`access`].

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::model::event::{Input, Publish};
use crate::transports::rpc_link;

pub mod access;
pub use access::BrokerAccess;

/// Topic on which JSON-RPC requests arrive.
pub const TOPIC_RPC_REQUEST: &str = "SPIN/jsonrpc/q";
/// Client id used towards an external broker (as SPIN did).
pub const CLIENT_ID: &str = "SPIN Daemon";
/// Largest MQTT payload accepted from clients (and by our client from an external broker).
/// A `traffic` message for a busy second can be large, so be generous.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// How spind talks MQTT (config keys `pubsub_*`, see the SPIN behaviour reference §5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttSettings {
    /// Run our own broker (`pubsub_run_mosquitto`) instead of connecting to one.
    pub embedded: bool,
    /// `pubsub_host`: broker address (embedded: where the TCP listener binds).
    pub host: String,
    /// `pubsub_port`.
    pub port: u16,
    /// Where the embedded broker's WebSocket listeners bind (SPIN: `spinweb_interfaces`).
    pub websocket_hosts: Vec<String>,
    /// `pubsub_websocket_port`.
    pub websocket_port: u16,
    /// `pubsub_timeout`: keepalive towards an external broker, in seconds.
    pub keepalive_secs: u16,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            embedded: true,
            host: "127.0.0.1".into(),
            port: 1883,
            websocket_hosts: vec!["127.0.0.1".into()],
            websocket_port: 1884,
            keepalive_secs: 60,
        }
    }
}

/// A running MQTT side. Dropping it does not stop the broker (rumqttd cannot be stopped); the
/// publishing thread ends when every clone of `publish` is gone.
pub struct MqttHandle {
    /// Messages for the broker, published in the order sent.
    pub publish: Sender<Publish>,
    /// Publishes dropped because the external broker was unreachable (always 0 when embedded).
    /// `AtomicUsize`, not `AtomicU64`: 32-bit MIPS (GL.iNet AR150) has no 64-bit atomics.
    /// Only the tests read it so far (no statistics message carries it yet).
    #[cfg_attr(not(test), allow(dead_code))]
    dropped: Arc<AtomicUsize>,
    _threads: Vec<JoinHandle<()>>,
}

impl MqttHandle {
    /// Queue one message; false if the publishing thread has gone (broker link lost for good).
    pub fn publish(&self, p: Publish) -> bool {
        self.publish.send(p).is_ok()
    }

    /// Number of messages dropped while an external broker was unreachable.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) as u64
    }
}

/// Start the MQTT side: embedded broker or connection to an external one.
///
/// Embedded: fails with a clear error if a listener address cannot be bound, and returns only
/// once all listeners accept connections; `access` guards its listeners. External: retries the
/// first connection 60 times, 1 s apart, then fails (that broker does its own access control).
pub fn start(s: &MqttSettings, access: &BrokerAccess, core: Sender<Input>) -> anyhow::Result<MqttHandle> {
    if s.embedded {
        embedded::start(s, access, core)
    } else {
        external::start(s, core, 60)
    }
}

/// Forward one request payload to the core. False if the core has gone.
fn forward_rpc(core: &Sender<Input>, payload: &[u8]) -> bool {
    rpc_link::send_for_mqtt(core, String::from_utf8_lossy(payload).into_owned()).is_ok()
}

/// The embedded broker's listeners: TCP first, then the WebSocket ones (none for an external
/// broker).
pub fn listen_addresses(s: &MqttSettings) -> anyhow::Result<Vec<SocketAddr>> {
    if !s.embedded {
        return Ok(Vec::new());
    }
    let mut addrs = vec![resolve(&s.host, s.port)?];
    for h in &s.websocket_hosts {
        addrs.push(resolve(h, s.websocket_port)?);
    }
    Ok(addrs)
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve MQTT listen address {host}:{port}"))?
        .next()
        .ok_or_else(|| anyhow!("no address for {host}:{port}"))
}

mod embedded {
    use super::*;
    use rumqttd::local::{LinkRx, LinkTx};
    use rumqttd::protocol::Packet;
    use std::collections::HashMap;

    /// rumqttd's router settings. See the module notes in the report / comments:
    /// * `max_outgoing_packet_count` is how many messages the router hands a subscriber per
    ///   read, and it also caps how many *retained* messages a new subscription receives (the
    ///   excess is silently dropped). A browser subscribing to `SPIN/traffic/#` must get a
    ///   retained `nodeInfo` for every live node, which can be thousands: keep this high.
    ///   Forwards share the payload buffers, so a big batch costs little memory.
    /// * The commit log of each subscribed filter keeps up to `(count + 1) * size` bytes: that is
    ///   how far a slow subscriber may lag before it skips messages (QoS 0, no disconnect), and
    ///   what a subscriber costs in memory. 4 x 256 KiB is ~1 s of a router with 10,000 active
    ///   flows (~10 s of a typical home); a browser that falls further behind skips some
    ///   traffic messages instead of the router's memory growing. The core splits `traffic`
    ///   into messages of at most 1,000 flows (~85 KB), so one message never fills a segment;
    ///   payloads are shared between filters.
    /// * `max_connections` sizes preallocated tables; a home router needs few.
    fn router_config() -> rumqttd::RouterConfig {
        rumqttd::RouterConfig {
            max_connections: 256,
            max_outgoing_packet_count: 20_000,
            max_segment_size: 256 * 1024,
            max_segment_count: 3,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        }
    }

    fn server(name: String, listen: SocketAddr, access: &BrokerAccess) -> rumqttd::ServerSettings {
        rumqttd::ServerSettings {
            name,
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                // Time a new connection has to send CONNECT.
                connection_timeout_ms: 10_000,
                max_payload_size: MAX_PAYLOAD,
                // Per-connection batch of packets read at once (and QoS 1/2 inflight).
                max_inflight_count: 100,
                auth: None,
                external_auth: None,
                dynamic_filters: false,
                access: Some(access.handler(listen)),
            },
        }
    }

    pub fn start(s: &MqttSettings, access: &BrokerAccess, core: Sender<Input>) -> anyhow::Result<MqttHandle> {
        quiet_broker_logs();
        let addrs = listen_addresses(s)?;
        let (tcp, ws) = (addrs[0], addrs[1..].to_vec());

        // rumqttd binds inside its own threads and only logs a failure, so find out here.
        // Hold all test sockets at once so duplicate addresses are caught too.
        {
            let mut held = Vec::new();
            for (kind, addr) in std::iter::once(("MQTT", tcp)).chain(ws.iter().map(|a| ("MQTT WebSocket", *a))) {
                let l = TcpListener::bind(addr).with_context(|| format!("cannot listen for {kind} on {addr}"))?;
                held.push(l);
            }
        }

        let mut config = rumqttd::Config { router: router_config(), ..Default::default() };
        config.v4 = Some(HashMap::from([("tcp".to_string(), server("mqtt-tcp".into(), tcp, access))]));
        config.ws = Some(
            ws.iter().enumerate().map(|(i, a)| (format!("ws{i}"), server(format!("mqtt-ws{i}"), *a, access))).collect(),
        );

        let mut broker = rumqttd::Broker::new(config);
        let (mut link_tx, link_rx) =
            broker.link("spind").map_err(|e| anyhow!("cannot link to the embedded broker: {e}"))?;
        let broker_thread = thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    log::error!("embedded MQTT broker stopped: {e}");
                }
            })
            .context("cannot start the MQTT broker thread")?;

        wait_listening(&addrs, &broker_thread, Duration::from_secs(10))?;

        link_tx.subscribe(TOPIC_RPC_REQUEST).map_err(|e| anyhow!("cannot subscribe to {TOPIC_RPC_REQUEST}: {e}"))?;

        let rx_thread = thread::Builder::new()
            .name("mqtt-link-rx".into())
            .spawn(move || receive_loop(link_rx, core))
            .context("cannot start the MQTT receive thread")?;

        let (publish, queue) = mpsc::channel();
        let tx_thread = thread::Builder::new()
            .name("mqtt-link-tx".into())
            .spawn(move || publish_loop(link_tx, queue))
            .context("cannot start the MQTT publish thread")?;

        log::info!(
            "embedded MQTT broker listening on {tcp} (TCP) and {} (WebSocket)",
            ws.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        );
        Ok(MqttHandle {
            publish,
            dropped: Arc::new(AtomicUsize::new(0)),
            _threads: vec![broker_thread, rx_thread, tx_thread],
        })
    }

    /// rumqttd logs through `tracing`, whose `log` feature forwards every event to our logger
    /// when no tracing subscriber is installed: that would put rumqttd's per-connection chatter
    /// (it logs an ordinary client disconnect at error level) into syslog. spind itself logs with
    /// `log` only, so a global do-nothing tracing subscriber silences just the broker.
    fn quiet_broker_logs() {
        let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    }

    /// Wait until every listener accepts TCP connections (or the broker thread died).
    fn wait_listening(addrs: &[SocketAddr], broker: &JoinHandle<()>, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for addr in addrs {
            let mut target = *addr;
            if target.ip().is_unspecified() {
                // A wildcard listener is reachable on loopback.
                target.set_ip(match target {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            loop {
                if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if broker.is_finished() {
                    bail!("embedded MQTT broker failed to start (listener {addr})");
                }
                if Instant::now() > deadline {
                    bail!("embedded MQTT broker does not accept connections on {addr}");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Requests from clients arrive here as forwards of our `SPIN/jsonrpc/q` subscription.
    fn receive_loop(mut rx: LinkRx, core: Sender<Input>) {
        use rumqttd::Notification;
        loop {
            match rx.recv() {
                Ok(Some(Notification::Forward(f))) => {
                    if !forward_rpc(&core, &f.publish.payload) {
                        log::debug!("core has gone; MQTT receive loop ends");
                        return;
                    }
                }
                // The router paused us because our outgoing buffer was full: we have drained
                // it, so ask to be scheduled again (otherwise we would never hear anything more).
                Ok(Some(Notification::Unschedule)) => {
                    if let Err(e) = rx.ready() {
                        log::error!("MQTT broker link lost: {e}");
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    log::error!("MQTT broker link lost: {e}");
                    return;
                }
            }
        }
    }

    fn publish_loop(mut tx: LinkTx, queue: Receiver<Publish>) {
        for p in queue {
            let packet =
                Packet::Publish(rumqttd::protocol::Publish::new(p.topic.into_bytes(), p.payload, p.retain), None);
            if let Err(e) = send_now(&mut tx, packet) {
                log::error!("cannot publish to the embedded MQTT broker: {e}");
                return;
            }
        }
    }

    /// `LinkTx::send` is the only public way to publish with the retain flag. It is an `async fn`
    /// without any await point (it pushes to a buffer and notifies the router over a blocking
    /// channel), so a single poll completes it; no runtime is needed.
    fn send_now(tx: &mut LinkTx, packet: Packet) -> anyhow::Result<()> {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let mut fut = std::pin::pin!(tx.send(packet));
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                return r.map(drop).map_err(|e| anyhow!("{e}"));
            }
            // Not reached with rumqttd 0.20; stay correct should a later version await.
            thread::yield_now();
        }
    }
}

mod external {
    use super::*;
    use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};

    pub fn start(s: &MqttSettings, core: Sender<Input>, attempts: u32) -> anyhow::Result<MqttHandle> {
        let mut opts = MqttOptions::new(CLIENT_ID, s.host.clone(), s.port);
        opts.set_keep_alive(Duration::from_secs(u64::from(s.keepalive_secs)))
            .set_clean_session(true)
            // Room for the MQTT header on top of the payload.
            .set_max_packet_size(MAX_PAYLOAD + 1024, MAX_PAYLOAD + 1024);
        let (client, mut conn) = Client::new(opts, 1000);

        let mut failures = 0;
        loop {
            match conn.recv() {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    failures += 1;
                    if failures >= attempts {
                        bail!("cannot connect to MQTT broker {}:{} ({failures} attempts): {e}", s.host, s.port);
                    }
                    log::debug!("MQTT connect to {}:{} failed ({e}), retrying", s.host, s.port);
                    thread::sleep(Duration::from_secs(1));
                }
                Err(_) => bail!("MQTT client closed before connecting"),
            }
        }
        // The request channel is empty right after connecting, so this cannot fail for space.
        client
            .try_subscribe(TOPIC_RPC_REQUEST, QoS::AtMostOnce)
            .map_err(|e| anyhow!("cannot subscribe to {TOPIC_RPC_REQUEST}: {e}"))?;
        log::info!("connected to MQTT broker {}:{}", s.host, s.port);

        let connected = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicUsize::new(0));
        let ev_thread = {
            let (client, connected) = (client.clone(), connected.clone());
            let peer = format!("{}:{}", s.host, s.port);
            thread::Builder::new()
                .name("mqtt-client".into())
                .spawn(move || event_loop(conn, client, connected, core, peer))
                .context("cannot start the MQTT client thread")?
        };
        let (publish, queue) = mpsc::channel();
        let tx_thread = {
            let (connected, dropped) = (connected.clone(), dropped.clone());
            thread::Builder::new()
                .name("mqtt-client-tx".into())
                .spawn(move || publish_loop(client, queue, connected, dropped))
                .context("cannot start the MQTT publish thread")?
        };
        Ok(MqttHandle { publish, dropped, _threads: vec![ev_thread, tx_thread] })
    }

    /// Polling the connection drives it, including reconnecting after a loss (rumqttc does
    /// that on the next poll); we pace retries at 1 s and subscribe again on every CONNACK
    /// because the session is clean.
    fn event_loop(mut conn: Connection, client: Client, connected: Arc<AtomicBool>, core: Sender<Input>, peer: String) {
        loop {
            match conn.recv() {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    if p.topic == TOPIC_RPC_REQUEST && !forward_rpc(&core, &p.payload) {
                        log::debug!("core has gone; MQTT client loop ends");
                        return;
                    }
                }
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    log::info!("reconnected to MQTT broker {peer}");
                    connected.store(true, Ordering::Relaxed);
                    // Subscribing from this thread must not block: this thread is the one
                    // that drains the request channel.
                    if client.try_subscribe(TOPIC_RPC_REQUEST, QoS::AtMostOnce).is_err() {
                        let c = client.clone();
                        thread::spawn(move || {
                            let _ = c.subscribe(TOPIC_RPC_REQUEST, QoS::AtMostOnce);
                        });
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if connected.swap(false, Ordering::Relaxed) {
                        log::warn!("lost connection to MQTT broker {peer}: {e}; reconnecting");
                    }
                    thread::sleep(Duration::from_secs(1));
                }
                // All clients dropped: the publishing side ended.
                Err(_) => return,
            }
        }
    }

    /// While disconnected, publishes are dropped (QoS 0; a clean session would discard them on
    /// reconnect anyway) instead of piling up in memory.
    fn publish_loop(client: Client, queue: Receiver<Publish>, connected: Arc<AtomicBool>, dropped: Arc<AtomicUsize>) {
        for p in queue {
            if !connected.load(Ordering::Relaxed) {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Err(e) = client.publish(p.topic, QoS::AtMostOnce, p.retain, p.payload) {
                log::error!("MQTT client stopped: {e}");
                return;
            }
        }
        let _ = client.disconnect();
    }
}

#[cfg(test)]
mod tests;
