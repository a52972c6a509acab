//! Tests against a real rumqttd on 127.0.0.1 with real rumqttc clients (TCP and WebSocket).

use super::*;
use crate::model::event::RpcReply;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS, Transport};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn embedded_settings() -> MqttSettings {
    MqttSettings {
        embedded: true,
        host: "127.0.0.1".into(),
        port: free_port(),
        websocket_hosts: vec!["127.0.0.1".into()],
        websocket_port: free_port(),
        keepalive_secs: 60,
    }
}

/// No admin account: every client may connect (as on a laptop).
fn open() -> BrokerAccess {
    BrokerAccess { auth: None, anonymous_read: false, traffic_topic: "SPIN/traffic".into(), ha_prefix: None }
}

/// A test client: messages received on `filter` arrive as (topic, payload, retain).
struct TestClient {
    client: Client,
    msgs: Receiver<(String, Vec<u8>, bool)>,
}

impl TestClient {
    fn connect(id: &str, s: &MqttSettings, ws: bool, filter: &str) -> TestClient {
        let mut opts = if ws {
            let url = format!("ws://127.0.0.1:{}/mqtt", s.websocket_port);
            let mut o = MqttOptions::new(id, url, s.websocket_port);
            o.set_transport(Transport::Ws);
            o
        } else {
            MqttOptions::new(id, "127.0.0.1", s.port)
        };
        opts.set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut conn) = Client::new(opts, 100);
        client.subscribe(filter, QoS::AtMostOnce).unwrap();
        let (tx, msgs) = mpsc::channel();
        let (subacked_tx, subacked) = mpsc::channel();
        thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec(), p.retain)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subacked_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        subacked.recv_timeout(Duration::from_secs(10)).expect("no SUBACK");
        TestClient { client, msgs }
    }

    fn next(&self) -> (String, Vec<u8>, bool) {
        self.msgs.recv_timeout(Duration::from_secs(10)).expect("no message within 10 s")
    }

    fn nothing_for(&self, d: Duration) -> bool {
        self.msgs.recv_timeout(d).is_err()
    }
}

fn next_rpc(core: &Receiver<Input>) -> String {
    match core.recv_timeout(Duration::from_secs(10)).expect("no Input within 10 s") {
        Input::Rpc { request, reply: RpcReply::Mqtt } => request,
        other => panic!("unexpected input {other:?}"),
    }
}

#[test]
fn tcp_subscriber_gets_publishes_in_order_and_retained_messages_work() {
    let s = embedded_settings();
    let (core_tx, _core_rx) = mpsc::channel();
    let h = start(&s, &open(), core_tx).unwrap();

    let a = TestClient::connect("a", &s, false, "SPIN/#");
    for i in 0..200 {
        assert!(h.publish(Publish::new("SPIN/traffic", format!("m{i}"), false)));
    }
    for i in 0..200 {
        let (topic, payload, _) = a.next();
        assert_eq!(topic, "SPIN/traffic");
        assert_eq!(payload, format!("m{i}").into_bytes());
    }

    // Retained: a later subscriber gets the last retained value.
    h.publish(Publish::new("SPIN/traffic/node/1", "old", true));
    h.publish(Publish::new("SPIN/traffic/node/1", "node1", true));
    h.publish(Publish::new("SPIN/traffic/node/2", "node2", true));
    for _ in 0..3 {
        a.next(); // once seen by `a`, the router has stored them
    }
    let b = TestClient::connect("b", &s, false, "SPIN/traffic/#");
    let mut got = vec![b.next(), b.next()];
    got.sort();
    assert_eq!(
        got,
        vec![
            ("SPIN/traffic/node/1".into(), b"node1".to_vec(), true),
            ("SPIN/traffic/node/2".into(), b"node2".to_vec(), true)
        ]
    );
    assert!(b.nothing_for(Duration::from_millis(300)));

    // An empty retained payload clears the topic for later subscribers (and is delivered as an
    // empty message to current ones, which the web app ignores).
    h.publish(Publish::new("SPIN/traffic/node/1", "", true));
    assert_eq!(a.next(), ("SPIN/traffic/node/1".into(), vec![], false));
    let c = TestClient::connect("c", &s, false, "SPIN/traffic/#");
    assert_eq!(c.next(), ("SPIN/traffic/node/2".into(), b"node2".to_vec(), true));
    assert!(c.nothing_for(Duration::from_millis(300)));
    drop(b);
}

#[test]
fn websocket_subscriber_on_mqtt_path_gets_publishes_and_retained() {
    let s = embedded_settings();
    let (core_tx, _core_rx) = mpsc::channel();
    let h = start(&s, &open(), core_tx).unwrap();
    h.publish(Publish::new("SPIN/traffic/node/7", "seven", true));
    // Make sure it is stored before the browser-like client subscribes.
    let tcp = TestClient::connect("sync", &s, false, "SPIN/sync");
    h.publish(Publish::new("SPIN/sync", "", false));
    tcp.next();

    let w = TestClient::connect("Web-abcde", &s, true, "SPIN/traffic/#");
    assert_eq!(w.next(), ("SPIN/traffic/node/7".into(), b"seven".to_vec(), true));
    for i in 0..50 {
        h.publish(Publish::new("SPIN/traffic", format!("w{i}"), false));
    }
    for i in 0..50 {
        assert_eq!(w.next().1, format!("w{i}").into_bytes());
    }
}

#[test]
fn rpc_request_from_a_client_reaches_the_core() {
    let s = embedded_settings();
    let (core_tx, core_rx) = mpsc::channel();
    let _h = start(&s, &open(), core_tx).unwrap();
    let cl = TestClient::connect("tool", &s, false, "SPIN/jsonrpc/a");
    let req = r#"{"jsonrpc":"2.0","id":1,"method":"list_devices"}"#;
    cl.client.publish(TOPIC_RPC_REQUEST, QoS::AtMostOnce, false, req).unwrap();
    assert_eq!(next_rpc(&core_rx), req);
    // Also over WebSocket, as the browser would.
    let w = TestClient::connect("Web-x", &s, true, "SPIN/jsonrpc/a");
    w.client.publish(TOPIC_RPC_REQUEST, QoS::AtMostOnce, false, "not json").unwrap();
    assert_eq!(next_rpc(&core_rx), "not json");
}

#[test]
fn sustained_load_is_delivered_without_losing_the_link() {
    let s = embedded_settings();
    let (core_tx, core_rx) = mpsc::channel();
    let h = start(&s, &open(), core_tx).unwrap();
    let a = TestClient::connect("load", &s, false, "SPIN/traffic");
    let payload = vec![b'x'; 1000];
    // A burst within the broker's lag tolerance (router_config: ~1 MiB per subscribed filter);
    // a subscriber further behind than that skips messages (QoS 0) rather than growing memory.
    let n = 700;
    let t = Instant::now();
    for i in 0..n {
        let mut p = payload.clone();
        p[..8].copy_from_slice(&(i as u64).to_be_bytes());
        h.publish(Publish::new("SPIN/traffic", p, false));
    }
    for i in 0..n {
        let (_, p, _) = a.next();
        assert_eq!(p[..8], (i as u64).to_be_bytes(), "message {i} out of order or lost");
    }
    eprintln!("{n} x 1 KB delivered in {:?}", t.elapsed());
    // A big payload (traffic messages can be large) goes through as well.
    h.publish(Publish::new("SPIN/traffic", vec![b'y'; 300 * 1024], false));
    assert_eq!(a.next().1.len(), 300 * 1024);
    // The link still works both ways.
    a.client.publish(TOPIC_RPC_REQUEST, QoS::AtMostOnce, false, "after load").unwrap();
    assert_eq!(next_rpc(&core_rx), "after load");
}

#[test]
fn port_in_use_is_a_clear_error() {
    let mut s = embedded_settings();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    s.websocket_port = busy.local_addr().unwrap().port();
    let (core_tx, _core_rx) = mpsc::channel();
    let err = start(&s, &open(), core_tx).err().expect("start must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("127.0.0.1:{}", s.websocket_port)), "{msg}");
    assert!(msg.contains("WebSocket"), "{msg}");
}

#[test]
fn external_mode_forwards_both_ways() {
    // A real external broker: an embedded spind broker would (rightly) refuse another spind's
    // publishes on SPIN/traffic.
    let mosquitto = testbed::mqtt::Mosquitto::start();
    let ext = MqttSettings { embedded: false, port: mosquitto.port, ..embedded_settings() };
    let (core2_tx, core2_rx) = mpsc::channel();
    let h2 = start(&ext, &open(), core2_tx).unwrap();

    let cl = TestClient::connect("tool", &ext, false, "SPIN/#");
    for i in 0..20 {
        h2.publish(Publish::new("SPIN/traffic", format!("e{i}"), false));
    }
    for i in 0..20 {
        assert_eq!(cl.next(), ("SPIN/traffic".into(), format!("e{i}").into_bytes(), false));
    }
    h2.publish(Publish::new("SPIN/traffic/node/3", "three", true));
    cl.next();
    let late = TestClient::connect("late", &ext, false, "SPIN/traffic/node/+");
    assert_eq!(late.next(), ("SPIN/traffic/node/3".into(), b"three".to_vec(), true));

    // The external client's subscription may be processed just after its CONNACK; retry the
    // request until it arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cl.client.publish(TOPIC_RPC_REQUEST, QoS::AtMostOnce, false, "ext-req").unwrap();
        if let Ok(Input::Rpc { request, reply: RpcReply::Mqtt }) = core2_rx.recv_timeout(Duration::from_millis(300)) {
            assert_eq!(request, "ext-req");
            break;
        }
        assert!(Instant::now() < deadline, "external client never got the request");
    }
    assert_eq!(h2.dropped(), 0);
}

#[test]
fn external_mode_gives_up_after_the_retries() {
    let port = free_port();
    let s = MqttSettings { embedded: false, port, ..MqttSettings::default() };
    let (core_tx, _rx) = mpsc::channel();
    let t = Instant::now();
    let err = external::start(&s, core_tx, 2).err().expect("no broker: must fail");
    assert!(format!("{err:#}").contains(&format!("127.0.0.1:{port}")), "{err:#}");
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[test]
fn many_retained_messages_all_reach_a_new_subscriber() {
    // rumqttd caps retained messages per new subscription at max_outgoing_packet_count.
    let s = embedded_settings();
    let (core_tx, _core_rx) = mpsc::channel();
    let h = start(&s, &open(), core_tx).unwrap();
    let n = 3000;
    for i in 0..n {
        h.publish(Publish::new(format!("SPIN/traffic/node/{i}"), format!("n{i}"), true));
    }
    let sync = TestClient::connect("sync", &s, false, "SPIN/sync");
    h.publish(Publish::new("SPIN/sync", "", false));
    sync.next();
    let b = TestClient::connect("browser", &s, true, "SPIN/traffic/#");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n {
        seen.insert(b.next().0);
    }
    assert_eq!(seen.len(), n);
}
