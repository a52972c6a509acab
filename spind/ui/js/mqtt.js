// A small MQTT 3.1.1 client over WebSocket (subprotocol "mqtt"), enough for a dashboard:
// CONNECT (optional username/password), SUBSCRIBE (QoS 0), receiving PUBLISH (QoS 0/1, retained
// flag), PINGREQ keepalive, and reconnecting with exponential backoff. No third-party code.
"use strict";

(function (global) {
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  // CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
  const CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
  };

  function str(s) {
    const b = enc.encode(s);
    const out = new Uint8Array(2 + b.length);
    out[0] = b.length >> 8;
    out[1] = b.length & 0xff;
    out.set(b, 2);
    return out;
  }

  function remainingLength(n) {
    const out = [];
    do {
      let d = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) d |= 0x80;
      out.push(d);
    } while (n > 0);
    return out;
  }

  function packet(first, parts) {
    const len = parts.reduce((a, p) => a + p.length, 0);
    const rl = remainingLength(len);
    const out = new Uint8Array(1 + rl.length + len);
    out[0] = first;
    out.set(rl, 1);
    let o = 1 + rl.length;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  class MqttClient {
    // opts: { url, clientId, username, password, keepalive (s), topics: [..],
    //         onMessage(topic, payloadString, retained), onState(state, detail) }
    constructor(opts) {
      this.opts = Object.assign({ keepalive: 30, topics: [] }, opts);
      this.ws = null;
      this.state = "idle";
      this.buf = new Uint8Array(0);
      this.backoff = 1000;
      this.timer = null;
      this.pingTimer = null;
      this.lastRx = 0;
      this.packetId = 1;
      this.stopped = false;
    }

    setState(s, detail) {
      this.state = s;
      if (this.opts.onState) this.opts.onState(s, detail);
    }

    start() {
      this.stopped = false;
      this.connect();
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      clearInterval(this.pingTimer);
      if (this.ws) {
        try {
          if (this.ws.readyState === 1) this.ws.send(new Uint8Array([0xe0, 0x00]));
          this.ws.close();
        } catch (e) { /* closing anyway */ }
      }
      this.ws = null;
      this.setState("idle");
    }

    setCredentials(username, password) {
      this.opts.username = username;
      this.opts.password = password;
    }

    connect() {
      clearTimeout(this.timer);
      if (this.stopped) return;
      this.setState(this.state === "idle" ? "connecting" : "reconnecting");
      let ws;
      try {
        ws = new WebSocket(this.opts.url, "mqtt");
      } catch (e) {
        this.setState("error", String(e));
        this.schedule();
        return;
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      this.buf = new Uint8Array(0);
      this.refused = false;
      ws.onopen = () => this.sendConnect();
      ws.onmessage = (ev) => this.receive(new Uint8Array(ev.data));
      ws.onerror = () => { /* onclose follows */ };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        clearInterval(this.pingTimer);
        this.ws = null;
        if (this.stopped) return;
        if (!this.refused) this.setState("reconnecting", "connection closed");
        this.schedule();
      };
    }

    schedule() {
      if (this.stopped || this.refused === "auth") return;
      const delay = this.backoff * (0.75 + Math.random() * 0.5);
      this.backoff = Math.min(this.backoff * 2, 30000);
      this.timer = setTimeout(() => this.connect(), delay);
    }

    // Reconnects now (e.g. after new credentials), resetting the backoff.
    reconnect() {
      this.refused = false;
      this.backoff = 1000;
      if (this.ws) {
        const ws = this.ws;
        this.ws = null;
        try { ws.close(); } catch (e) { /* ignore */ }
      }
      clearInterval(this.pingTimer);
      this.connect();
    }

    send(bytes) {
      if (this.ws && this.ws.readyState === 1) this.ws.send(bytes);
    }

    sendConnect() {
      const o = this.opts;
      let flags = 0x02; // clean session
      const payload = [str(o.clientId)];
      if (o.username) {
        flags |= 0x80;
        payload.push(str(o.username));
        if (o.password != null && o.password !== "") {
          flags |= 0x40;
          payload.push(str(o.password));
        }
      }
      const vh = new Uint8Array([0, 4, 77, 81, 84, 84, 4, flags, o.keepalive >> 8, o.keepalive & 0xff]);
      this.send(packet(0x10, [vh, ...payload]));
    }

    subscribe(topics) {
      const id = (this.packetId = (this.packetId % 65535) + 1);
      const parts = [new Uint8Array([id >> 8, id & 0xff])];
      for (const t of topics) {
        parts.push(str(t));
        parts.push(new Uint8Array([0]));
      }
      this.send(packet(0x82, parts));
    }

    receive(chunk) {
      this.lastRx = Date.now();
      if (this.buf.length) {
        const b = new Uint8Array(this.buf.length + chunk.length);
        b.set(this.buf);
        b.set(chunk, this.buf.length);
        chunk = b;
      }
      let off = 0;
      while (off < chunk.length) {
        // Fixed header: type byte + variable-length remaining length.
        let mult = 1, len = 0, i = off + 1, done = false;
        while (i < chunk.length && i < off + 5) {
          const d = chunk[i++];
          len += (d & 0x7f) * mult;
          mult *= 128;
          if (!(d & 0x80)) { done = true; break; }
        }
        if (!done || i + len > chunk.length) break;
        this.handle(chunk[off], chunk.subarray(i, i + len));
        off = i + len;
      }
      this.buf = off < chunk.length ? chunk.slice(off) : new Uint8Array(0);
    }

    handle(first, body) {
      const type = first >> 4;
      switch (type) {
        case 2: { // CONNACK
          const rc = body[1];
          if (rc === 0) {
            this.backoff = 1000;
            this.setState("connected");
            if (this.opts.topics.length) this.subscribe(this.opts.topics);
            clearInterval(this.pingTimer);
            const ka = this.opts.keepalive * 1000;
            this.pingTimer = setInterval(() => {
              if (Date.now() - this.lastRx > ka * 1.5) {
                // The broker went silent: drop the connection and reconnect.
                if (this.ws) this.ws.close();
                return;
              }
              this.send(new Uint8Array([0xc0, 0x00]));
            }, ka * 0.75);
            if (this.opts.onConnect) this.opts.onConnect();
          } else {
            this.refused = rc === 4 || rc === 5 ? "auth" : "other";
            this.setState(this.refused === "auth" ? "unauthorized" : "error",
              "broker refused: " + (CONNACK_REASONS[rc] || "code " + rc));
            if (this.ws) this.ws.close();
          }
          break;
        }
        case 3: { // PUBLISH
          const qos = (first >> 1) & 3;
          const retained = (first & 1) === 1;
          const tlen = (body[0] << 8) | body[1];
          const topic = dec.decode(body.subarray(2, 2 + tlen));
          let p = 2 + tlen;
          if (qos > 0) {
            const id0 = body[p], id1 = body[p + 1];
            p += 2;
            // PUBACK (QoS 1) / PUBREC (QoS 2; we never ask for it, but stay polite).
            this.send(new Uint8Array([qos === 1 ? 0x40 : 0x50, 2, id0, id1]));
          }
          const payload = dec.decode(body.subarray(p));
          if (this.opts.onMessage) {
            try {
              this.opts.onMessage(topic, payload, retained);
            } catch (e) {
              console.error("message handler failed", e);
            }
          }
          break;
        }
        case 6: // PUBREL (QoS 2 flow) -> PUBCOMP
          this.send(new Uint8Array([0x70, 2, body[0], body[1]]));
          break;
        case 9: // SUBACK
        case 13: // PINGRESP
        default:
          break;
      }
    }
  }

  global.MqttClient = MqttClient;
})(typeof window !== "undefined" ? window : globalThis);
