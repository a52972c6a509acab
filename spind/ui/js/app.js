// spind's web UI: the live graph of which device talks to which internet service, fed by MQTT
// over WebSocket (SPIN/traffic/#), with actions through JSON-RPC (POST /spin_api/jsonrpc).
// All text from the network is put into the page with textContent, never as HTML.
"use strict";

(function () {
  const IDLE_FADE_S = 300; // start fading after 5 minutes without traffic
  const IDLE_DROP_S = 600; // and leave after 10
  const ACTIVE_MS = 3000; // an edge is drawn "active" this long after traffic
  const LISTS = ["block", "allow", "ignore"];

  const params = new URLSearchParams(location.search);
  const bench = params.get("bench");

  // ---- state ---------------------------------------------------------------------------------
  const S = {
    info: new Map(), // id -> node object (nodeInfo / get_device_data), the daemon's view
    nodes: new Map(), // id -> { id, bytes, lastActive(ms), dnsOnly } : nodes in the live view
    flows: new Map(), // "from>to" -> { key, from, to, ports:Set, bytes, packets, lastActive, dns, blockedPkts, lastBlocked }
    lists: { block: new Set(), allow: new Set(), ignore: new Set() },
    flowBlocks: new Set(), // "min-max"
    conn: { state: "connecting", detail: "" },
    selected: null, // { type: "node", id } | { type: "edge", key }
    pendingInfo: new Set(),
    creds: loadCreds(),
    messages: 0,
  };

  const $ = (sel) => document.querySelector(sel);

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // ---- labels and classification ----------------------------------------------------------------
  function isMulticast(ip) {
    if (/^(22[4-9]|23\d)\./.test(ip)) return true;
    return /^ff[0-9a-f]{2}:/i.test(ip);
  }

  function label(id) {
    const i = S.info.get(id);
    if (!i) return "node " + id;
    if (i.name) return i.name;
    if (i.mac) return window.SpinDevices ? SpinDevices.deviceLabel(i) : i.mac;
    if (i.domains && i.domains.length) return i.domains[0].replace(/\.$/, "");
    const ip = i.ips && i.ips[0];
    if (ip) {
      if (ip === "255.255.255.255") return "Broadcast";
      if (isMulticast(ip)) return "Multicast " + ip;
      return ip;
    }
    return "node " + id;
  }

  function kind(id) {
    const i = S.info.get(id) || {};
    if (i.mac) return "device";
    if ((i.ips || []).some(isMulticast)) return "multicast";
    return "service";
  }

  function onList(list, id) {
    const i = S.info.get(id);
    if (!i) return false;
    if (list === "block" && i.is_blocked) return true;
    if (list === "allow" && i.is_excepted) return true;
    return (i.ips || []).some((ip) => S.lists[list].has(ip));
  }

  const flowPair = (a, b) => (a < b ? a + "-" + b : b + "-" + a);

  // ---- graph ----------------------------------------------------------------------------------
  const graph = new SpinGraph($("#graph"), {
    on_node: (id) => select({ type: "node", id }),
    on_edge: (key) => select({ type: "edge", key }),
    on_background: () => select(null),
  });
  const chart = new TrafficChart($("#chart"), 300);

  function visible(id) {
    return S.nodes.has(id) && !onList("ignore", id);
  }

  // Brings the graph in line with the model for one node and its flows.
  function syncNode(id) {
    const m = S.nodes.get(id);
    if (!visible(id)) {
      if (graph.nodes.has(id)) graph.removeNode(id);
      return;
    }
    let n = graph.nodes.get(id);
    if (!n) {
      const peers = [];
      for (const f of S.flows.values()) {
        if (f.from === id && graph.nodes.has(f.to)) peers.push(f.to);
        else if (f.to === id && graph.nodes.has(f.from)) peers.push(f.from);
        if (peers.length >= 3) break;
      }
      n = graph.upsertNode(id, peers);
    }
    styleNode(n, m);
  }

  function styleNode(n, m) {
    const id = n.id;
    const k = kind(id);
    const blocked = onList("block", id);
    const allowed = onList("allow", id);
    n.label = label(id);
    n.device = k === "device";
    n.r = Math.min(26, (n.device ? 8 : 6) + 2.5 * Math.log10(1 + m.bytes / 1000));
    n.fill = blocked ? "#dc2626" : n.device ? "#475569" : k === "multicast" ? "#a855f7"
      : m.bytes === 0 && m.dnsOnly ? "#f59e0b" : "#0ea5e9";
    n.stroke = allowed ? "#16a34a" : blocked ? "#7f1d1d" : null;
    n.strokeWidth = allowed ? 3 : 2;
    const idle = (Date.now() - m.lastActive) / 1000;
    n.alpha = idle <= IDLE_FADE_S ? 1 : Math.max(0.2, 1 - 0.8 * (idle - IDLE_FADE_S) / (IDLE_DROP_S - IDLE_FADE_S));
    graph.dirty = true;
  }

  function syncFlow(f) {
    const show = visible(f.from) && visible(f.to);
    if (!show) {
      if (graph.edges.has(f.key)) graph.removeEdge(f.key);
      return;
    }
    if (!graph.nodes.has(f.from)) syncNode(f.from);
    if (!graph.nodes.has(f.to)) syncNode(f.to);
    const e = graph.upsertEdge(f.key, f.from, f.to);
    styleEdge(e, f);
  }

  function styleEdge(e, f) {
    const now = Date.now();
    const blocked = S.flowBlocks.has(flowPair(f.from, f.to)) || now - f.lastBlocked < 60000;
    e.width = Math.min(8, 1 + 0.7 * Math.log10(1 + f.bytes / 1000));
    e.dash = blocked || (f.dns && f.bytes === 0);
    e.color = blocked ? "#dc2626" : f.bytes === 0 && f.dns ? "#f59e0b"
      : now - f.lastActive < ACTIVE_MS ? "#0284c7" : "#94a3b8";
    const names = [];
    for (const p of f.ports) if (!names.includes(p)) names.push(p);
    e.label = names.slice(0, 3).join(", ") + (names.length > 3 ? ", …" : "") || (f.dns ? "dns query" : "");
    graph.dirty = true;
  }

  function syncAll() {
    for (const id of S.nodes.keys()) syncNode(id);
    for (const id of Array.from(graph.nodes.keys())) if (!S.nodes.has(id)) graph.removeNode(id);
    for (const f of S.flows.values()) syncFlow(f);
  }

  // ---- model updates --------------------------------------------------------------------------
  function touch(id, bytes, when) {
    let m = S.nodes.get(id);
    if (!m) {
      m = { id, bytes: 0, lastActive: when, dnsOnly: false };
      S.nodes.set(id, m);
      if (!S.info.has(id)) needInfo(id);
    }
    m.bytes += bytes;
    m.lastActive = Math.max(m.lastActive, when);
    return m;
  }

  function flow(from, to) {
    const key = from + ">" + to;
    let f = S.flows.get(key);
    if (!f) {
      f = { key, from, to, ports: new Set(), bytes: 0, packets: 0, lastActive: 0, dns: false, blockedPkts: 0, lastBlocked: 0 };
      S.flows.set(key, f);
    }
    return f;
  }

  // A node referenced before its nodeInfo: ask the daemon (once).
  function needInfo(id) {
    if (bench || S.pendingInfo.has(id)) return;
    S.pendingInfo.add(id);
    rpc("get_device_data", { node: id }).then((r) => {
      if (r && !S.info.has(id)) setInfo(r);
    }).catch(() => {}).finally(() => S.pendingInfo.delete(id));
  }

  // SPIN's nodeInfo carries no vendor or type (its shape stays SPIN's): keep what
  // list_devices/get_device_data said of the device.
  const IDENTITY = ["vendor", "random_mac", "type", "type_source"];
  function keepIdentity(i) {
    const old = S.info.get(i.id);
    if (old && i.mac && !("vendor" in i)) for (const k of IDENTITY) if (k in old) i[k] = old[k];
    return i;
  }

  function setInfo(i) {
    if (!i || typeof i.id !== "number") return;
    S.info.set(i.id, keepIdentity(i));
    if (S.nodes.has(i.id)) {
      syncNode(i.id);
      refreshPanelIf("node", i.id);
    }
  }

  function dropNode(id, mergedTo) {
    const m = S.nodes.get(id);
    if (mergedTo != null && m) {
      const t = touch(mergedTo, m.bytes, m.lastActive);
      t.dnsOnly = t.dnsOnly && m.dnsOnly;
    }
    for (const [k, f] of Array.from(S.flows)) {
      if (f.from !== id && f.to !== id) continue;
      S.flows.delete(k);
      graph.removeEdge(k);
      if (mergedTo == null) continue;
      const from = f.from === id ? mergedTo : f.from;
      const to = f.to === id ? mergedTo : f.to;
      if (from === to) continue;
      const g = flow(from, to);
      for (const p of f.ports) g.ports.add(p);
      g.bytes += f.bytes;
      g.packets += f.packets;
      g.lastActive = Math.max(g.lastActive, f.lastActive);
      g.dns = g.dns || f.dns;
      g.lastBlocked = Math.max(g.lastBlocked, f.lastBlocked);
      syncFlow(g);
    }
    S.nodes.delete(id);
    S.info.delete(id);
    graph.removeNode(id);
    if (mergedTo != null) syncNode(mergedTo);
    if (S.selected && S.selected.type === "node" && S.selected.id === id) {
      select(mergedTo != null ? { type: "node", id: mergedTo } : null);
    }
  }

  function clearAll() {
    S.info.clear();
    S.nodes.clear();
    S.flows.clear();
    S.flowBlocks.clear();
    for (const l of LISTS) S.lists[l].clear();
    graph.clear();
    chart.clear();
    select(null);
  }

  // ---- MQTT messages --------------------------------------------------------------------------
  function onMessage(topic, payload) {
    if (!payload) return; // a cleared retained node topic; the admin message says why
    let msg;
    try {
      msg = JSON.parse(payload);
    } catch (e) {
      return;
    }
    if (topic === "SPIN/alerts") {
      if (window.SpinDevices) SpinDevices.onAlert(msg);
      return;
    }
    S.messages++;
    handle(msg);
  }

  function handle(msg) {
    const r = msg.result;
    const now = Date.now();
    switch (msg.command) {
      case "nodeInfo":
        setInfo(r);
        break;
      case "traffic": {
        if (!r || !Array.isArray(r.flows)) break;
        const changed = new Set();
        for (const x of r.flows) {
          const from = typeof x.from === "object" ? (setInfo(x.from), x.from.id) : x.from;
          const to = typeof x.to === "object" ? (setInfo(x.to), x.to.id) : x.to;
          if (typeof from !== "number" || typeof to !== "number") continue;
          const size = x.size || 0;
          const a = touch(from, size, now), b = touch(to, size, now);
          a.dnsOnly = b.dnsOnly = false;
          const f = flow(from, to);
          f.bytes += size;
          f.packets += x.count || 0;
          f.lastActive = now;
          const svc = serviceName(x.to_port, x.protocol);
          if (svc) f.ports.add(svc);
          changed.add(from).add(to);
          syncFlow(f);
        }
        for (const id of changed) syncNode(id);
        // spind sends one message per second stamped with its clock: bucket by that stamp (so
        // timer jitter does not put two messages in one second), unless the clocks disagree.
        const nowSec = Math.floor(now / 1000);
        const ts = typeof r.timestamp === "number" && Math.abs(r.timestamp - nowSec) < 600 ? r.timestamp : nowSec;
        chart.add(ts, r.total_size || 0);
        if (S.selected) refreshPanelIf(S.selected.type, S.selected.id ?? S.selected.key, true);
        break;
      }
      case "dnsquery": {
        if (!r || typeof r.from !== "number" || typeof r.queriednode !== "number") break;
        touch(r.from, 0, now);
        const q = touch(r.queriednode, 0, now);
        if (q.bytes === 0) q.dnsOnly = true;
        const f = flow(r.from, r.queriednode);
        f.dns = true;
        f.lastActive = now;
        syncFlow(f);
        syncNode(r.from);
        syncNode(r.queriednode);
        break;
      }
      case "blocked": {
        if (!r || typeof r.from !== "number" || typeof r.to !== "number") break;
        touch(r.from, 0, now);
        touch(r.to, 0, now);
        const f = flow(r.from, r.to);
        f.blockedPkts += r.count || 1;
        f.lastBlocked = now;
        const svc = serviceName(r.to_port, r.protocol);
        if (svc) f.ports.add(svc);
        syncFlow(f);
        break;
      }
      case "block":
      case "allow":
      case "ignore":
        if (Array.isArray(r)) setList(msg.command, r);
        break;
      case "nodeMerged":
        if (r && typeof r.id === "number") dropNode(r.id, r["merged-to"]);
        break;
      case "nodeDeleted":
        if (r && typeof r.id === "number") dropNode(r.id, null);
        break;
      case "serverRestart":
        // The daemon restarted: its ids mean something else now. Start over.
        clearAll();
        if (mqtt) mqtt.subscribe(["SPIN/traffic/#"]);
        bootstrap();
        break;
      default:
        break;
    }
  }

  function setList(name, ips) {
    S.lists[name] = new Set(ips);
    syncAll();
    if (S.selected) refreshPanelIf(S.selected.type, S.selected.id ?? S.selected.key);
    if (openList === name) renderListDialog();
    updateListCounts();
  }

  // ---- JSON-RPC ---------------------------------------------------------------------------------
  class RpcError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  let rpcId = Math.floor(Math.random() * 1e6);
  async function rpc(method, params) {
    const body = { jsonrpc: "2.0", id: ++rpcId, method };
    if (params) body.params = params;
    const headers = { "Content-Type": "application/json" };
    if (S.creds) headers.Authorization = "Basic " + btoa(unescape(encodeURIComponent(S.creds.user + ":" + S.creds.pass)));
    for (let attempt = 0; ; attempt++) {
      let resp;
      try {
        resp = await fetch("/spin_api/jsonrpc", { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
      } catch (e) {
        if (attempt < 3) { await sleep(500 * 2 ** attempt); continue; }
        throw new RpcError("cannot reach spind: " + e.message, 0);
      }
      if (resp.status === 401) {
        askCredentials("The web server asks for a user name and password.");
        throw new RpcError("not authorized", 401);
      }
      if ((resp.status === 502 || resp.status === 503) && attempt < 3) { await sleep(500 * 2 ** attempt); continue; }
      if (!resp.ok) throw new RpcError("HTTP " + resp.status, resp.status);
      const j = JSON.parse(await resp.text());
      if (j.error) throw new RpcError(j.error.message, j.error.code);
      return j.result;
    }
  }

  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

  // Runs an action and reports failure to the user instead of failing silently.
  async function act(what, fn) {
    try {
      await fn();
    } catch (e) {
      toast(`${what} failed: ${e.message}`, true);
    }
  }

  function toast(text, error) {
    const t = $("#toast");
    t.textContent = text;
    t.className = error ? "error" : "";
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (t.hidden = true), 5000);
  }

  // Loads what the daemon already knows (lists, flow blocks, devices and their recent flows),
  // so the graph is not empty until the next traffic, e.g. after a page reload.
  async function bootstrap() {
    try {
      await Promise.all(LISTS.map((l) => rpc("list_iplist", { list: l }).then((r) => setList(l, r || []))));
      await refreshFlowBlocks();
      const devices = (await rpc("list_devices")) || [];
      const now = Date.now();
      for (const d of devices) {
        S.info.set(d.id, d);
        touch(d.id, 0, now);
      }
      await Promise.all(devices.filter((d) => d.mac).map(async (d) => {
        const flows = (await rpc("list_device_flows", { device: d.mac }).catch(() => [])) || [];
        for (const x of flows) {
          if (typeof x.to !== "number" || x.to === d.id) continue;
          const f = flow(d.id, x.to);
          if (x.blocked) f.lastBlocked = now;
          const bytes = x.bytes || 0;
          if (bytes > f.bytes) {
            const extra = bytes - f.bytes;
            f.bytes = bytes;
            touch(d.id, extra, now);
            touch(x.to, extra, now);
          } else {
            touch(x.to, 0, now);
          }
          f.packets = Math.max(f.packets, x.packets || 0);
          f.lastActive = Math.max(f.lastActive, 1);
          const svc = serviceName(x.dst_port, x.icmp_type && !x.dst_port ? 1 : undefined);
          if (svc) f.ports.add(svc);
        }
      }));
      syncAll();
      S.bootstrapped = true;
      showWifiButton();
      if (window.SpinDevices) SpinDevices.loadAlerts();
    } catch (e) {
      if (e.code !== 401) toast("Could not load the current state: " + e.message, true);
    }
  }

  async function refreshFlowBlocks() {
    const r = (await rpc("get_flow_block")) || [];
    S.flowBlocks = new Set(r.map((p) => flowPair(p.node1, p.node2)));
    for (const f of S.flows.values()) syncFlow(f);
  }

  // ---- connection ---------------------------------------------------------------------------------
  // spind serves the broker's WebSocket at /mqtt on its own web port (also under TLS), so the
  // page finds it whatever pubsub_websocket_port is. ?mqtt_host= / ?mqtt_port= still point the
  // UI at another broker, as in SPIN's app (a port without host: this host; a host without
  // port: SPIN's 1884).
  function brokerUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const host = params.get("mqtt_host"), port = params.get("mqtt_port");
    if (!host && !port) return `${scheme}://${location.host}/mqtt`;
    const h = host || location.hostname;
    const h6 = h.includes(":") && !h.startsWith("[") ? `[${h}]` : h;
    return `${scheme}://${h6}:${parseInt(port || "1884", 10)}/mqtt`;
  }

  function setConn(state, detail) {
    S.conn = { state, detail: detail || "" };
    const el = $("#conn");
    const text = { connecting: "Connecting…", connected: "Live", reconnecting: "Reconnecting…", error: "Error", unauthorized: "Login needed", idle: "Offline", bench: "Benchmark" }[state] || state;
    el.textContent = text;
    el.title = detail || text;
    el.dataset.state = state;
    if (state === "unauthorized") brokerRefused(detail);
  }

  // On the LAN the broker needs the admin: the login session's own MQTT password (the session
  // cookie is HttpOnly, so the page asks /spin_api/mqtt_login for it), or what the user typed.
  async function sessionMqttLogin() {
    if (params.get("mqtt_host")) return null;
    try {
      const r = await fetch("/spin_api/mqtt_login", { credentials: "same-origin", cache: "no-store" });
      const j = r.ok ? await r.json() : {};
      return j.username ? j : null;
    } catch (e) {
      return null;
    }
  }

  // A refused session password may just be old (a new login): fetch it again once; only a
  // refusal of a fresh one, or of typed credentials, asks the user.
  async function brokerRefused(detail) {
    const why = "The message broker refused the connection (" + (detail || "not authorized") + ").";
    if (S.creds || !mqtt) return askCredentials(why);
    const s = await sessionMqttLogin();
    if (s && s.password !== S.mqttPassword) {
      S.mqttPassword = s.password;
      mqtt.setCredentials(s.username, s.password);
      mqtt.reconnect();
    } else {
      askCredentials(why);
    }
  }

  let mqtt = null;
  async function startMqtt() {
    const s = S.creds ? null : await sessionMqttLogin();
    if (s) S.mqttPassword = s.password;
    mqtt = new MqttClient({
      url: brokerUrl(),
      clientId: "spind-ui-" + Math.random().toString(36).slice(2, 10),
      username: S.creds ? S.creds.user : s && s.username,
      password: S.creds ? S.creds.pass : s && s.password,
      keepalive: 30,
      topics: ["SPIN/traffic/#", "SPIN/alerts"],
      onMessage,
      onState: setConn,
      onConnect: () => bootstrap(),
    });
    mqtt.start();
  }

  function loadCreds() {
    try {
      return JSON.parse(sessionStorage.getItem("spind-creds") || "null");
    } catch (e) {
      return null;
    }
  }

  function askCredentials(why) {
    const d = $("#login");
    $("#login-why").textContent = why;
    if (!d.open) d.showModal();
  }

  $("#login form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    S.creds = { user: $("#login-user").value, pass: $("#login-pass").value };
    try { sessionStorage.setItem("spind-creds", JSON.stringify(S.creds)); } catch (e) { /* private mode */ }
    $("#login").close();
    if (mqtt) {
      mqtt.setCredentials(S.creds.user, S.creds.pass);
      mqtt.reconnect();
    }
  });

  // ---- side panel -----------------------------------------------------------------------------------
  const panel = $("#panel");

  function select(sel) {
    S.selected = sel;
    graph.selectedNode = sel && sel.type === "node" ? sel.id : null;
    graph.selectedEdge = sel && sel.type === "edge" ? sel.key : null;
    graph.dirty = true;
    if (!sel) {
      panel.hidden = true;
      document.body.classList.remove("has-panel");
      return;
    }
    panel.hidden = false;
    document.body.classList.add("has-panel");
    if (sel.type === "node") renderNodePanel(sel.id, true);
    else renderEdgePanel(sel.key, true);
    // On a phone the panel is a bottom sheet over the graph: keep the selection visible above it.
    if (sel.type === "node" && getComputedStyle(panel).position === "fixed") {
      const p = graph.screenPos(sel.id);
      const g = graph.canvas.getBoundingClientRect();
      const sheetTop = panel.getBoundingClientRect().top;
      if (p && p.y + p.r > sheetTop - 8) graph.centerOn(sel.id, g.width / 2, Math.max(40, (sheetTop - g.top) / 2));
    }
  }

  function refreshPanelIf(type, idOrKey, trafficOnly) {
    const s = S.selected;
    if (!s || s.type !== type || (s.id ?? s.key) !== idOrKey) return;
    if (type === "node") renderNodePanel(s.id, false, trafficOnly);
    else renderEdgePanel(s.key, false);
  }

  const fmtTime = (sec) => (sec ? new Date(sec * 1000).toLocaleString() : "–");

  function dlRow(term, value) {
    return [h("dt", null, term), h("dd", null, value)];
  }

  function renderNodePanel(id, fresh, trafficOnly) {
    const i = S.info.get(id) || { id, ips: [], domains: [] };
    const m = S.nodes.get(id);
    const k = kind(id);
    const blocked = onList("block", id), allowed = onList("allow", id), ignored = onList("ignore", id);
    const body = $("#panel-body");
    if (trafficOnly) {
      const t = body.querySelector("[data-field=traffic]");
      if (t && m) t.textContent = formatBytes(m.bytes);
      return;
    }
    const status = [blocked && "blocked", allowed && "allowed", ignored && "ignored"].filter(Boolean).join(", ") || "–";
    const rename = h("form", { class: "rename", onsubmit: (ev) => {
      ev.preventDefault();
      const name = ev.target.elements.name.value.trim();
      act("Rename", async () => {
        await rpc("set_device_name", { node: id, name });
        const fresh = await rpc("get_device_data", { node: id }).catch(() => null);
        setInfo(fresh || Object.assign({}, i, { name }));
        toast(`Renamed to “${name}”`);
      });
    } },
      h("label", { for: "rename-input" }, "Name"),
      h("input", { id: "rename-input", name: "name", value: i.name || "", placeholder: label(id), autocomplete: "off", required: true }),
      h("button", { type: "submit" }, "Rename"));
    const listAction = (list, on, addText, removeText) => h("button", {
      type: "button", "data-action": list, "aria-pressed": on ? "true" : "false",
      onclick: () => act(on ? removeText : addText, async () => {
        await rpc(on ? "remove_iplist_node" : "add_iplist_node", { list, node: id });
        const [l, d] = await Promise.all([rpc("list_iplist", { list }), rpc("get_device_data", { node: id }).catch(() => null)]);
        if (d) S.info.set(id, keepIdentity(d));
        setList(list, l || []);
      }),
    }, on ? removeText : addText);
    const actions = h("div", { class: "actions" },
      listAction("block", blocked, "Block", "Unblock"),
      listAction("allow", allowed, "Allow", "Stop allowing"),
      listAction("ignore", ignored, "Ignore", "Stop ignoring"));
    const capture = i.mac ? h("div", { class: "capture" },
      window.SpinDevices && !bench ? h("button", { type: "button", "data-action": "history", onclick: () => SpinDevices.openDevice(i.mac) }, "History") : null,
      h("a", { class: "button", href: `/spin_api/tcpdump_start?device=${encodeURIComponent(i.mac)}`, download: `spin-${i.mac.replace(/:/g, "")}.pcap` }, "Capture packets"),
      h("button", { type: "button", onclick: () => act("Stop capture", async () => {
        const r = await fetch(`/spin_api/tcpdump_stop?device=${encodeURIComponent(i.mac)}`, { credentials: "same-origin" });
        if (!r.ok) throw new Error("HTTP " + r.status);
        toast("Capture stopped");
      }) }, "Stop capture")) : null;
    const flowsBox = h("section", { class: "flows" }, h("h3", null, k === "device" ? "Recent flows" : "Talks with"));
    // Services and pause (controls.js), for devices.
    const controls = k === "device" && i.mac && window.SpinControls && !bench ? SpinControls.devicePanel(i, fresh) : null;
    // Keep what the user is typing and where the keyboard focus is across a re-render.
    const oldInput = body.querySelector("#rename-input");
    const typing = oldInput && !fresh && oldInput.value !== oldInput.defaultValue ? oldInput.value : null;
    const focusKey = !fresh && body.contains(document.activeElement)
      ? (document.activeElement.id || document.activeElement.dataset.action || null) : null;
    body.replaceChildren(
      h("p", { class: "kind" }, k === "device" ? "Device" : k === "multicast" ? "Multicast" : "Internet service"),
      h("dl", null,
        dlRow("Name", i.name || "–"),
        k === "device" ? dlRow("MAC", i.mac) : null,
        dlRow("Addresses", (i.ips || []).join("\n") || "–"),
        dlRow("DNS names", (i.domains || []).map((d) => d.replace(/\.$/, "")).join("\n") || "–"),
        dlRow("Last seen", fmtTime(i.lastseen)),
        [h("dt", null, "Traffic seen"), h("dd", { "data-field": "traffic" }, m ? formatBytes(m.bytes) : "–")],
        dlRow("Status", status),
        dlRow("Node id", String(id))),
      rename, actions, capture, controls, flowsBox);
    if (k === "device" && i.mac && window.spinBedtime) body.insertBefore(window.spinBedtime.section(i.mac, { rpc, h }), flowsBox);
    $("#panel-title").textContent = label(id);
    if (typing != null) body.querySelector("#rename-input").value = typing;
    if (focusKey) {
      const el = body.querySelector("#" + CSS.escape(focusKey)) || body.querySelector(`[data-action="${CSS.escape(focusKey)}"]`);
      if (el) el.focus();
    }
    if (k === "device" && i.mac) {
      rpc("list_device_flows", { device: i.mac }).then((list) => renderDeviceFlows(flowsBox, list || [])).catch((e) => flowsBox.append(h("p", null, "Could not load flows: " + e.message)));
    } else {
      const peers = Array.from(S.flows.values()).filter((f) => f.to === id || f.from === id);
      flowsBox.append(peers.length ? h("ul", null, peers.map((f) => h("li", null,
        `${label(f.from === id ? f.to : f.from)} · ${Array.from(f.ports).join(", ") || "–"} · ${formatBytes(f.bytes)}`))) : h("p", null, "No flows seen yet."));
    }
    if (fresh && !bench) rpc("get_device_data", { node: id }).then((d) => {
      if (d && JSON.stringify(d) !== JSON.stringify(S.info.get(id))) setInfo(d);
    }).catch(() => {});
  }

  function renderDeviceFlows(box, list) {
    if (!list.length) return box.append(h("p", null, "No flows seen yet."));
    list.sort((a, b) => (b.lastseen || 0) - (a.lastseen || 0));
    box.append(h("table", null,
      h("thead", null, h("tr", null, h("th", null, "To"), h("th", null, "Service"), h("th", null, "Packets"), h("th", null, "Bytes"), h("th", null, "Last"))),
      h("tbody", null, list.slice(0, 50).map((f) => h("tr", null,
        h("td", null, label(f.to)),
        h("td", null, serviceName(f.dst_port, f.icmp_type && !f.dst_port ? 1 : undefined) || "–"),
        f.blocked ? h("td", { colspan: 3, class: "blocked" }, "blocked")
          : [h("td", null, String(f.packets ?? "")), h("td", null, formatBytes(f.bytes || 0)), h("td", null, f.lastseen ? new Date(f.lastseen * 1000).toLocaleTimeString() : "")])))));
    for (const f of list) if (!S.info.has(f.to)) needInfo(f.to);
  }

  function renderEdgePanel(key, fresh) {
    const f = S.flows.get(key);
    const body = $("#panel-body");
    if (!f) return select(null);
    const blocked = S.flowBlocks.has(flowPair(f.from, f.to));
    $("#panel-title").textContent = `${label(f.from)} → ${label(f.to)}`;
    body.replaceChildren(
      h("p", { class: "kind" }, "Flow"),
      h("dl", null,
        dlRow("From", label(f.from)),
        dlRow("To", label(f.to)),
        dlRow("Services", Array.from(f.ports).join(", ") || (f.dns ? "dns query only" : "–")),
        dlRow("Traffic seen", formatBytes(f.bytes)),
        dlRow("Blocked packets", String(f.blockedPkts)),
        dlRow("Flow block", blocked ? "blocked" : "not blocked")),
      h("div", { class: "actions" },
        h("button", { type: "button", "data-action": "flow-block", "aria-pressed": blocked ? "true" : "false", onclick: () => act("Flow block", async () => {
          await rpc("set_flow_block", { node1: f.from, node2: f.to, block: blocked ? 0 : 1 });
          await refreshFlowBlocks();
          renderEdgePanel(key, false);
        }) }, blocked ? "Unblock this flow" : "Block this flow"),
        h("button", { type: "button", onclick: () => select({ type: "node", id: f.from }) }, "Show " + label(f.from)),
        h("button", { type: "button", onclick: () => select({ type: "node", id: f.to }) }, "Show " + label(f.to))));
    if (fresh && !bench) refreshFlowBlocks().then(() => {
      const now = S.flowBlocks.has(flowPair(f.from, f.to));
      if (now !== blocked && S.selected && S.selected.key === key) renderEdgePanel(key, false);
    }).catch(() => {});
  }

  $("#panel-close").addEventListener("click", () => select(null));

  // ---- list dialogs ----------------------------------------------------------------------------
  let openList = null;
  const LIST_TITLES = { block: "Blocked addresses", allow: "Allowed addresses", ignore: "Ignored addresses" };

  function ipOwner(ip) {
    for (const [id, i] of S.info) if ((i.ips || []).includes(ip)) return label(id);
    return null;
  }

  function renderListDialog() {
    const name = openList;
    const d = $("#lists");
    $("#lists-title").textContent = LIST_TITLES[name];
    const ips = Array.from(S.lists[name]);
    $("#lists-body").replaceChildren(ips.length
      ? h("ul", { class: "iplist" }, ips.map((ip) => {
        const owner = ipOwner(ip);
        return h("li", null, h("span", null, ip, owner && owner !== ip ? h("small", null, " " + owner) : null),
          h("button", { type: "button", "aria-label": `Remove ${ip} from the ${name} list`, onclick: () => act("Remove", async () => {
            await rpc("remove_iplist_ip", { list: name, ip });
            setList(name, (await rpc("list_iplist", { list: name })) || []);
            if (!bench) for (const id of S.nodes.keys()) if ((S.info.get(id)?.ips || []).includes(ip)) needRefresh(id);
          }) }, "Remove"));
      }))
      : h("p", null, "The list is empty."));
    $("#lists-reset").hidden = name !== "ignore";
    if (!d.open) d.showModal();
  }

  function needRefresh(id) {
    rpc("get_device_data", { node: id }).then(setInfo).catch(() => {});
  }

  for (const l of LISTS) {
    $(`#show-${l}`).addEventListener("click", async () => {
      openList = l;
      renderListDialog();
      if (!bench) act("Load list", async () => setList(l, (await rpc("list_iplist", { list: l })) || []));
    });
  }
  $("#lists").addEventListener("close", () => (openList = null));
  $("#lists-close").addEventListener("click", () => $("#lists").close());
  $("#lists-reset").addEventListener("click", () => act("Reset ignores", async () => {
    await rpc("reset_iplist_ignore");
    setList("ignore", (await rpc("list_iplist", { list: "ignore" })) || []);
  }));

  // ---- WiFi (routers with an access point: get_wifi/set_wifi) ----------------------------------
  async function showWifiButton() {
    const w = await rpc("get_wifi").catch(() => null);
    $("#show-wifi").hidden = !(w && w.available);
  }

  function ago(seconds) {
    if (seconds == null) return "";
    if (seconds < 120) return `${seconds} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }

  function renderWifi(w, fillForm) {
    $("#wifi-state").textContent = !w.available ? "This router has no WiFi network."
      : w.running ? `Broadcasting “${w.broadcast_ssid}” on channel ${w.channel}, country ${w.country}.`
        : `The access point is not running${w.state ? ` (${w.state})` : ""}: network “${w.ssid}”, country ${w.country}.`;
    const clients = w.clients || [];
    $("#wifi-clients").replaceChildren(...(clients.length ? clients.map((c) => h("li", null,
      h("span", null, c.node != null ? label(c.node) : c.mac, h("small", null, ` ${c.mac}${c.connected_time != null ? ", connected " + ago(c.connected_time) : ""}${c.signal != null ? `, ${c.signal} dBm` : ""}`)),
      c.node != null ? h("button", { type: "button", onclick: () => { $("#wifi").close(); select({ type: "node", id: c.node }); } }, "Show") : null))
      : [h("li", null, "No device is connected.")]));
    if (fillForm && w.available) {
      $("#wifi-ssid").value = w.ssid;
      $("#wifi-country").value = w.country;
      $("#wifi-pass").value = "";
    }
  }

  async function loadWifi(fillForm) {
    try {
      renderWifi(await rpc("get_wifi"), fillForm);
    } catch (e) {
      $("#wifi-state").textContent = "Could not load the WiFi state: " + e.message;
    }
  }

  $("#show-wifi").addEventListener("click", () => {
    $("#wifi-message").textContent = "";
    if (!$("#wifi").open) $("#wifi").showModal();
    loadWifi(true);
  });
  $("#wifi-close").addEventListener("click", () => $("#wifi").close());
  $("#wifi-pass-show").addEventListener("change", (e) => ($("#wifi-pass").type = e.target.checked ? "text" : "password"));
  $("#wifi-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = $("#wifi-message");
    const params = { ssid: $("#wifi-ssid").value, country: $("#wifi-country").value };
    if ($("#wifi-pass").value) params.passphrase = $("#wifi-pass").value;
    $("#wifi-save").disabled = true;
    try {
      const r = await rpc("set_wifi", params);
      msg.className = "";
      msg.textContent = r.message;
      $("#wifi-pass").value = "";
      // The access point restarts in the background: show its state as it comes back.
      for (const ms of [2000, 5000, 10000]) setTimeout(() => $("#wifi").open && loadWifi(false), ms);
    } catch (err) {
      msg.className = "error";
      msg.textContent = "Not saved: " + err.message;
    } finally {
      $("#wifi-save").disabled = false;
    }
  });

  function updateListCounts() {
    for (const l of LISTS) $(`#show-${l} .count`).textContent = String(S.lists[l].size);
  }

  $("#fit").addEventListener("click", () => { graph.autoFit = true; graph.dirty = true; });

  // ---- node list (keyboard access to the graph) ------------------------------------------------
  const nodeList = $("#nodelist");
  function renderNodeList() {
    const ids = Array.from(graph.nodes.keys());
    $("#nodelist-count").textContent = String(ids.length);
    if (!nodeList.open) return;
    const filter = $("#nodelist-filter").value.trim().toLowerCase();
    const items = ids.map((id) => [id, label(id)]).filter(([, l]) => !filter || l.toLowerCase().includes(filter))
      .sort((a, b) => a[1].localeCompare(b[1])).slice(0, 300);
    $("#nodelist ul").replaceChildren(...items.map(([id, l]) => h("li", null,
      h("button", { type: "button", class: "link " + kind(id), onclick: () => select({ type: "node", id }) }, l))));
  }
  nodeList.addEventListener("toggle", renderNodeList);
  $("#nodelist-filter").addEventListener("input", renderNodeList);

  // ---- the 1 Hz housekeeping tick ------------------------------------------------------------------
  function tick() {
    const now = Date.now();
    for (const [id, m] of Array.from(S.nodes)) {
      if ((now - m.lastActive) / 1000 > IDLE_DROP_S && !(S.selected && S.selected.id === id)) {
        dropNode(id, null);
        continue;
      }
      const n = graph.nodes.get(id);
      if (n) styleNode(n, m);
    }
    for (const f of S.flows.values()) {
      const e = graph.edges.get(f.key);
      if (e) styleEdge(e, f);
    }
    chart.draw(Math.floor(now / 1000));
    renderNodeList();
  }
  setInterval(tick, 1000);

  // ---- test and debugging hooks ------------------------------------------------------------------
  window.spinState = {
    connection: () => S.conn.state,
    bootstrapped: () => !!S.bootstrapped,
    messages: () => S.messages,
    nodes: () => Array.from(S.nodes.keys()).map((id) => {
      const n = graph.nodes.get(id);
      const p = n ? graph.screenPos(id) : null;
      return {
        id, label: label(id), kind: kind(id), shown: !!n && n.alpha > 0,
        blocked: onList("block", id), allowed: onList("allow", id), ignored: onList("ignore", id),
        fill: n ? n.fill : null, x: p && p.x, y: p && p.y, r: p && p.r,
      };
    }),
    edges: () => Array.from(S.flows.values()).map((f) => ({
      key: f.key, from: f.from, to: f.to, services: Array.from(f.ports), bytes: f.bytes,
      shown: graph.edges.has(f.key), flowBlocked: S.flowBlocks.has(flowPair(f.from, f.to)),
    })),
    lists: () => Object.fromEntries(LISTS.map((l) => [l, Array.from(S.lists[l])])),
    selected: () => S.selected,
    screenPos: (id) => graph.screenPos(id),
    // True once the layout has (nearly) stopped moving, so screen positions stay put.
    settled: () => graph.alpha < 0.02 && (!graph.autoFit || Math.abs(graph.fitTarget().scale - graph.scale) < 0.01 * graph.scale),
    select: (id) => select(id == null ? null : { type: "node", id }),
    // The node labels drawn in the last frame (world coordinates; they never overlap).
    labels: () => (graph.labelBoxes || []).map((b) => Object.assign({ label: label(b.id) }, b)),
    frameStats: () => graph.stats(),
    resetFrameStats: () => graph.resetStats(),
    graph,
    handle,
  };

  // ---- start ---------------------------------------------------------------------------------------
  if (window.SpinControls) SpinControls.init({ rpc, h, act, toast });
  if (window.SpinDevices) SpinDevices.init({
    rpc, h, act, toast,
    remember: (d) => setInfo(d),
    showNode: (id) => { touch(id, 0, Date.now()); syncNode(id); select({ type: "node", id }); },
    labelOfMac: (mac) => { for (const i of S.info.values()) if (i.mac === mac) return label(i.id); return null; },
  });
  if (bench) {
    setConn("bench", "synthetic load " + bench);
    runBench(bench);
  } else {
    startMqtt();
  }

  // Benchmark mode (?bench=NODESxEDGES): synthesises the load in the browser, no broker:
  // NODES nodes (a tenth of them devices) and EDGES flows, all with traffic every second,
  // through the same message handler as live data.
  function runBench(spec) {
    const [nn, ne] = spec.split("x").map((x) => parseInt(x, 10));
    const N = nn || 500, E = ne || 2000;
    const devices = Math.max(1, Math.round(N / 10));
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let id = 1; id <= N; id++) {
      const dev = id <= devices;
      handle({ command: "nodeInfo", result: dev
        ? { id, mac: "02:00:00:00:" + ((id >> 8) & 255).toString(16).padStart(2, "0") + ":" + (id & 255).toString(16).padStart(2, "0"), lastseen: Math.floor(Date.now() / 1000), ips: ["192.168.1." + (id % 250)], domains: [] }
        : { id, lastseen: Math.floor(Date.now() / 1000), ips: ["198.51." + (id >> 8) + "." + (id & 255)], domains: ["svc" + id + ".example.test."] } });
    }
    const pairs = new Set();
    const flows = [];
    // Every service gets at least one device, then random extra flows up to E.
    for (let to = devices + 1; to <= N && flows.length < E; to++) {
      const from = 1 + Math.floor(rand() * devices);
      pairs.add(from + ">" + to);
      flows.push({ from, to, protocol: 6, from_port: 40000, to_port: 443 });
    }
    const ports = [443, 80, 53, 123, 853, 22, 5353, 1883, 8080];
    while (flows.length < E) {
      const from = 1 + Math.floor(rand() * devices);
      const to = devices + 1 + Math.floor(rand() * (N - devices));
      if (pairs.has(from + ">" + to)) continue;
      pairs.add(from + ">" + to);
      flows.push({ from, to, protocol: 6, from_port: 40000, to_port: ports[Math.floor(rand() * ports.length)] });
    }
    const handleMs = [];
    window.spinBench = { nodes: N, edges: E, handleMs, stats: () => Object.assign(graph.stats(), {
      handleAvg: handleMs.reduce((a, b) => a + b, 0) / (handleMs.length || 1),
      handleMax: Math.max(0, ...handleMs), ticks: handleMs.length,
      shownNodes: graph.nodes.size, shownEdges: graph.edges.size,
    }) };
    let second = Math.floor(Date.now() / 1000);
    const send = () => {
      const t0 = performance.now();
      const fl = flows.map((f) => Object.assign({}, f, { size: Math.floor(rand() * 50000), count: 1 + Math.floor(rand() * 40) }));
      handle({ command: "traffic", argument: "", result: { flows: fl, timestamp: second++, total_size: fl.reduce((a, f) => a + f.size, 0), total_count: 0 } });
      handleMs.push(performance.now() - t0);
    };
    send();
    setInterval(send, 1000);
  }
})();
