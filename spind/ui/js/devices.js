// Memory (issue 14): the Devices view (every device with its name or vendor, type icon, traffic
// today, top services today, status and last seen; sortable), a device's page (its history as a
// chart over 24 hours, 7 days or 30 days, its top services and alerts over the same range, the
// type correction) and the alerts list with its unread count, live from SPIN/alerts.
// app.js hands in its helpers with SpinDevices.init({ rpc, h, act, toast, remember, showNode });
// it forwards SPIN/alerts messages to SpinDevices.onAlert.
// All text from the network goes into the page with textContent (through h), never as HTML.
"use strict";

window.SpinDevices = (function () {
  let ui = null;
  const $ = (sel) => document.querySelector(sel);
  const DAY = 86400;
  const ONLINE_S = 300; // "online": seen in the last five minutes (the graph's fade starts then)

  // The types spind guesses (identity.rs) and the user may set, with an icon each.
  const TYPES = {
    phone: ["📱", "Phone"], laptop: ["💻", "Laptop"], tv: ["📺", "TV"], speaker: ["🔊", "Speaker"],
    camera: ["📷", "Camera"], console: ["🎮", "Game console"], printer: ["🖨️", "Printer"],
    iot: ["💡", "Smart device"], router: ["📡", "Router"],
  };
  const typeIcon = (t) => (TYPES[t] || ["❔", "Unknown type"])[0];
  const typeName = (t) => (TYPES[t] || [null, "Unknown type"])[1];

  // "Apple, Inc." -> "Apple": the registry's legal names are long for a graph label.
  function shortVendor(v) {
    if (!v) return null;
    const s = v.split(",")[0].replace(/\s+(inc|corp|corporation|co|ltd|limited|gmbh|llc|s\.?a|b\.?v|technologies|technology|electronics)\.?$/i, "").trim();
    return s || v;
  }

  // A device's label everywhere: its name, else its vendor and the MAC's last two bytes (two
  // phones of one maker stay apart), else its MAC.
  function deviceLabel(d) {
    if (d.name) return d.name;
    const v = shortVendor(d.vendor);
    return v && d.mac ? `${v} ${d.mac.slice(-5)}` : d.mac || "device " + d.id;
  }

  const nowS = () => Math.floor(Date.now() / 1000);
  function localMidnight(sec) {
    const d = new Date(sec * 1000);
    d.setHours(0, 0, 0, 0);
    return Math.floor(d.getTime() / 1000);
  }
  const fmtWhen = (sec) => (sec ? new Date(sec * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "–");
  function ago(sec) {
    if (!sec) return "never";
    const s = nowS() - sec;
    if (s < 90) return "just now";
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 2 * DAY) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / DAY)} days ago`;
  }

  // Runs `fn` over `items` with at most `n` calls in flight (a household has tens of devices;
  // spind answers RPCs one at a time anyway).
  async function pool(items, n, fn) {
    const out = new Array(items.length);
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]).catch(() => null);
      }
    }));
    return out;
  }

  const sum = (rows, k) => (rows || []).reduce((a, r) => a + (r[k] || 0), 0);

  // ---- the Devices view ---------------------------------------------------------------------------
  const COLUMNS = [
    { key: "label", title: "Device", value: (r) => r.label.toLowerCase() },
    { key: "type", title: "Type", value: (r) => r.d.type || "~" },
    { key: "today", title: "Today", value: (r) => r.today ?? -1 },
    { key: "top", title: "Top services today", value: (r) => (r.top[0] || "~").toLowerCase() },
    { key: "status", title: "Status", value: (r) => r.status },
    { key: "lastseen", title: "Last seen", value: (r) => r.d.lastseen || 0 },
  ];
  const view = { rows: [], sort: "lastseen", desc: true, historyOff: false };

  function status(d, paused) {
    if (d.is_blocked) return "blocked";
    if (paused.has(d.mac)) return "paused";
    if (d.is_excepted) return "allowed";
    return nowS() - (d.lastseen || 0) <= ONLINE_S ? "online" : "offline";
  }

  async function loadDevices() {
    const [devices, paused] = await Promise.all([ui.rpc("list_devices"), ui.rpc("list_paused_devices").catch(() => [])]);
    const pausedMacs = new Set((paused || []).map((p) => p.device));
    const list = (devices || []).filter((d) => d.mac);
    for (const d of list) ui.remember(d);
    // Today in local time, by the hour (spind's days are UTC days).
    const from = localMidnight(nowS()), to = nowS() + 3600;
    view.historyOff = false;
    const today = await pool(list, 4, async (d) => {
      try {
        const [days, top] = await Promise.all([
          ui.rpc("get_history", { device: d.mac, from, to, resolution: "hour" }),
          ui.rpc("top_services", { device: d.mac, from, to }),
        ]);
        return { bytes: sum(days, "bytes_in") + sum(days, "bytes_out"), top: (top || []).slice(0, 3).map((t) => t.name) };
      } catch (e) {
        if (e.code === -3) view.historyOff = true;
        throw e;
      }
    });
    view.rows = list.map((d, i) => ({
      d, label: deviceLabel(d), status: status(d, pausedMacs),
      today: today[i] ? today[i].bytes : null, top: today[i] ? today[i].top : [],
    }));
  }

  function renderDevices() {
    const h = ui.h;
    const col = COLUMNS.find((c) => c.key === view.sort) || COLUMNS[5];
    const rows = view.rows.slice().sort((a, b) => {
      const x = col.value(a), y = col.value(b);
      const c = x < y ? -1 : x > y ? 1 : a.label.localeCompare(b.label);
      return view.desc ? -c : c;
    });
    const head = h("tr", null, COLUMNS.map((c) => h("th", {
      scope: "col", "aria-sort": c.key === view.sort ? (view.desc ? "descending" : "ascending") : "none",
    }, h("button", { type: "button", class: "sort", "data-sort": c.key, onclick: () => {
      view.desc = view.sort === c.key ? !view.desc : c.key === "today" || c.key === "lastseen";
      view.sort = c.key;
      renderDevices();
    } }, c.title))));
    const body = rows.map((r) => h("tr", { "data-mac": r.d.mac, class: "status-" + r.status },
      h("td", null, h("button", { type: "button", class: "link device", "data-label": r.label, onclick: () => openDevice(r.d.mac) },
        h("span", { class: "typeicon", title: typeName(r.d.type), "aria-hidden": "true" }, typeIcon(r.d.type)), " ", r.label),
        r.d.name && r.d.vendor ? h("small", null, shortVendor(r.d.vendor)) : null),
      h("td", { "data-field": "type" }, r.d.type ? typeName(r.d.type) : "–"),
      h("td", { "data-field": "today" }, r.today == null ? "–" : formatBytes(r.today)),
      h("td", { "data-field": "top" }, r.top.join(", ") || "–"),
      h("td", { "data-field": "status" }, h("span", { class: "badge " + r.status }, r.status)),
      h("td", { "data-field": "lastseen", title: fmtWhen(r.d.lastseen) }, ago(r.d.lastseen))));
    $("#devices-body").replaceChildren(
      view.historyOff ? h("p", { class: "note" }, "The history is off on this router (history = 0): no traffic per day.") : null,
      rows.length
        ? h("div", { class: "tablewrap" }, h("table", { class: "devices" }, h("thead", null, head), h("tbody", null, body)))
        : h("p", null, "No device seen yet."));
    $("#devices-count").textContent = `${rows.length} device${rows.length === 1 ? "" : "s"}`;
  }

  async function openList() {
    const d = $("#devices");
    $("#devices-body").replaceChildren(ui.h("p", null, "Loading…"));
    if (!d.open) d.showModal();
    try {
      await loadDevices();
      renderDevices();
    } catch (e) {
      $("#devices-body").replaceChildren(ui.h("p", { class: "error" }, "Could not load the devices: " + e.message));
    }
  }

  // ---- a device's page --------------------------------------------------------------------------
  const RANGES = {
    day: { title: "24 hours", seconds: DAY, resolution: "hour", step: 3600 },
    week: { title: "7 days", seconds: 7 * DAY, resolution: "hour", step: 3600 },
    month: { title: "30 days", seconds: 30 * DAY, resolution: "day", step: DAY },
  };
  const page = { mac: null, range: "day", buckets: [], from: 0, to: 0 };

  // The range ends now; for a device not seen since before its start, at its last activity
  // (the caption says so), so a device that left still shows what it did. Buckets are whole
  // hours, or whole days in UTC (spind's daily totals).
  function rangeBounds(device, range) {
    const r = RANGES[range];
    let to = nowS();
    const seen = device && device.lastseen;
    const anchored = !!seen && seen < to - r.seconds;
    if (anchored) to = seen;
    to = Math.floor(to / r.step) * r.step + r.step;
    return { from: to - r.seconds, to, anchored };
  }

  // Every step of the range, with zeros where spind has no record (it returns only the buckets
  // with traffic).
  function fill(buckets, from, to, range) {
    const step = RANGES[range].step;
    const by = new Map(buckets.map((b) => [b.time, b]));
    const out = [];
    for (let t = from; t < to; t += step) out.push(by.get(t) || { time: t, bytes_in: 0, bytes_out: 0, packets: 0, blocked: 0 });
    return out;
  }

  async function openDevice(mac) {
    page.mac = mac;
    const d = $("#device");
    $("#device-body").replaceChildren(ui.h("p", null, "Loading…"));
    if ($("#devices").open) $("#devices").close();
    if (!d.open) d.showModal();
    await renderDevicePage();
  }

  async function renderDevicePage() {
    const h = ui.h;
    const mac = page.mac;
    const seq = (page.seq = (page.seq || 0) + 1); // only the newest render draws
    let device;
    try {
      device = ((await ui.rpc("list_devices")) || []).find((x) => x.mac === mac);
    } catch (e) {
      $("#device-body").replaceChildren(h("p", { class: "error" }, "Could not load the device: " + e.message));
      return;
    }
    if (!device) {
      $("#device-title").textContent = mac;
      $("#device-body").replaceChildren(h("p", null, "spind does not know this device (any more)."));
      return;
    }
    ui.remember(device);
    const { from, to, anchored } = rangeBounds(device, page.range);
    const r = RANGES[page.range];
    let history = null, top = null, alerts = null, error = null;
    try {
      [history, top, alerts] = await Promise.all([
        ui.rpc("get_history", { device: mac, from, to, resolution: r.resolution }),
        ui.rpc("top_services", { device: mac, from, to }),
        ui.rpc("list_alerts", { since: from }),
      ]);
    } catch (e) {
      error = e.code === -3 ? "The history is off on this router (history = 0)." : "Could not load the history: " + e.message;
    }
    if (page.seq !== seq) return; // another device or range was asked for meanwhile
    page.buckets = history ? fill(history, from, to, page.range) : [];
    page.from = from;
    page.to = to;
    page.shown = page.range; // what the chart shows (page.range may already be the next)
    const total = sum(page.buckets, "bytes_in") + sum(page.buckets, "bytes_out");
    $("#device-title").replaceChildren(h("span", { class: "typeicon", "aria-hidden": "true" }, typeIcon(device.type)), " ", deviceLabel(device));
    const rangeButtons = h("div", { class: "ranges", role: "group", "aria-label": "Range" }, Object.entries(RANGES).map(([k, v]) =>
      h("button", { type: "button", "data-range": k, "aria-pressed": k === page.range ? "true" : "false", onclick: () => {
        page.range = k;
        renderDevicePage();
      } }, v.title)));
    const canvas = h("canvas", { id: "history-chart", role: "img", "aria-label": `Traffic per ${r.resolution} over ${r.title}: ${formatBytes(total)} in all` });
    const readout = h("p", { id: "history-readout", class: "note" },
      anchored ? `Not seen in the last ${r.title}: the ${r.title} up to its last activity, ${fmtWhen(device.lastseen)}. ` : "",
      `${formatBytes(sum(page.buckets, "bytes_in"))} down, ${formatBytes(sum(page.buckets, "bytes_out"))} up`,
      sum(page.buckets, "blocked") ? `, ${sum(page.buckets, "blocked")} blocked packets` : "", ".");
    const typeSelect = h("select", { id: "device-type", "aria-label": "Device type", onchange: (ev) => ui.act("Set the type", async () => {
      const v = ev.target.value;
      await ui.rpc("set_device_type", { device: mac, type: v === "" ? null : v });
      ui.toast(v === "" ? "The type is guessed again" : `Marked as ${typeName(v).toLowerCase()}`);
      await renderDevicePage();
    }) },
      h("option", { value: "", selected: device.type_source !== "user" }, device.type_source !== "user" && device.type ? `Guess: ${typeName(device.type)}` : "Guess"),
      Object.keys(TYPES).map((t) => h("option", { value: t, selected: device.type_source === "user" && device.type === t }, typeName(t))));
    const mine = (alerts || []).filter((a) => a.device === mac).reverse();
    $("#device-body").replaceChildren(
      h("dl", null,
        h("dt", null, "MAC"), h("dd", null, mac + (device.random_mac ? " (random, set by the device)" : "")),
        h("dt", null, "Maker"), h("dd", null, device.vendor || (device.random_mac ? "– (a random MAC says nothing)" : "–")),
        h("dt", null, "Type"), h("dd", null, typeSelect),
        h("dt", null, "Addresses"), h("dd", null, (device.ips || []).join("\n") || "–"),
        h("dt", null, "Last seen"), h("dd", null, `${fmtWhen(device.lastseen)} (${ago(device.lastseen)})`)),
      h("div", { class: "actions" },
        h("button", { type: "button", id: "device-show", onclick: () => { $("#device").close(); ui.showNode(device.id); } }, "Show in the graph"),
        h("a", { class: "button", href: `/spin_api/export?device=${encodeURIComponent(mac)}&from=${from}&to=${to}&format=csv`, download: `spin-${mac.replace(/:/g, "")}.csv` }, "Export CSV")),
      h("h3", null, "Traffic"), rangeButtons,
      ...(error ? [h("p", { class: "error" }, error)] : [canvas, readout]),
      h("h3", null, `Top services, ${r.title}`),
      top && top.length ? h("ol", { class: "top", id: "device-top" }, top.slice(0, 10).map((t) => h("li", null,
        h("span", null, t.name), h("small", null, ` ${formatBytes((t.bytes_in || 0) + (t.bytes_out || 0))}${t.blocked ? `, ${t.blocked} blocked` : ""}`))))
        : h("p", null, error ? "–" : "Nothing in this range."),
      h("h3", null, `Alerts, ${r.title}`),
      mine.length ? h("ul", { class: "alerts" }, mine.map(alertItem)) : h("p", null, "None."));
    if (!error) drawChart(canvas);
  }

  // Bars per hour or day: download and upload stacked, a red mark over a bucket with blocked
  // packets. Drawn once per render (and on resize); the readout follows the pointer.
  function drawChart(canvas) {
    const b = page.buckets;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600, hgt = canvas.clientHeight || 180;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const left = 52, bottom = 20, top = 8, plotW = w - left - 6, plotH = hgt - bottom - top;
    const max = Math.max(1, ...b.map((x) => (x.bytes_in || 0) + (x.bytes_out || 0)));
    const bw = plotW / Math.max(1, b.length);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#475569";
    ctx.textBaseline = "middle";
    ctx.fillText(formatBytes(max), 2, top + 6);
    ctx.fillText("0", 2, top + plotH);
    ctx.strokeStyle = "#e2e8f0";
    ctx.beginPath();
    ctx.moveTo(left, top + plotH + 0.5);
    ctx.lineTo(left + plotW, top + plotH + 0.5);
    ctx.stroke();
    b.forEach((x, i) => {
      const down = (x.bytes_in || 0) / max * plotH, up = (x.bytes_out || 0) / max * plotH;
      const bx = left + i * bw + Math.min(1, bw * 0.1);
      const width = Math.max(1, bw - Math.min(2, bw * 0.2));
      ctx.fillStyle = "#0ea5e9";
      ctx.fillRect(bx, top + plotH - down, width, down);
      ctx.fillStyle = "#14b8a6";
      ctx.fillRect(bx, top + plotH - down - up, width, up);
      if (x.blocked) {
        ctx.fillStyle = "#dc2626";
        ctx.fillRect(bx, top, width, 3);
      }
    });
    // Time labels: about six, on whole hours or days.
    ctx.fillStyle = "#475569";
    ctx.textBaseline = "top";
    const every = Math.max(1, Math.ceil(b.length / 6));
    const daily = RANGES[page.range].resolution === "day" || page.range === "week";
    let lastRight = -Infinity;
    b.forEach((x, i) => {
      if (i % every) return;
      const d = new Date(x.time * 1000);
      const text = daily ? d.toLocaleDateString([], { day: "numeric", month: "short" }) : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      const tx = left + i * bw;
      const tw = ctx.measureText(text).width;
      if (tx <= lastRight + 4 || tx + tw > w) return;
      ctx.fillText(text, tx, top + plotH + 4);
      lastRight = tx + tw;
    });
    canvas.onpointermove = (ev) => {
      const i = Math.floor((ev.offsetX - left) / bw);
      const x = b[i];
      if (!x) return;
      const byDay = RANGES[page.range].resolution === "day";
      const when = new Date(x.time * 1000).toLocaleString([], byDay
        ? { weekday: "short", day: "numeric", month: "short" }
        : { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
      $("#history-readout").textContent = `${when}: ${formatBytes(x.bytes_in || 0)} down, ${formatBytes(x.bytes_out || 0)} up, `
        + `${x.packets || 0} packets${x.blocked ? `, ${x.blocked} blocked` : ""}`;
    };
  }

  // ---- alerts -------------------------------------------------------------------------------------
  const alerts = { list: [] };
  const KIND_TEXT = {
    new_device: "New device", new_service: "New service", traffic_peak: "Traffic peak",
    blocked_attempts: "Blocked attempts", store_corrupt: "History damaged",
  };

  function deviceName(mac) {
    const r = view.rows.find((x) => x.d.mac === mac);
    return r ? r.label : ui.labelOfMac(mac) || mac;
  }

  function alertItem(a) {
    const h = ui.h;
    return h("li", { class: a.acked ? "read" : "unread", "data-alert": String(a.id) },
      h("div", null,
        h("strong", null, KIND_TEXT[a.kind] || a.kind),
        a.device ? [" · ", h("button", { type: "button", class: "link inline", onclick: () => openDevice(a.device) }, deviceName(a.device))] : null,
        h("small", null, " " + fmtWhen(a.time))),
      h("div", { class: "detail" }, a.detail || ""),
      a.acked ? null : h("button", { type: "button", class: "ack", "aria-label": "Mark as read", onclick: () => ui.act("Mark as read", async () => {
        await ui.rpc("ack_alert", { id: a.id });
        a.acked = true;
        renderAlerts();
      }) }, "Mark read"));
  }

  function unread() {
    return alerts.list.filter((a) => !a.acked).length;
  }

  function renderCount() {
    const n = unread();
    const c = $("#alerts-unread");
    c.textContent = String(n);
    c.classList.toggle("unread", n > 0);
    $("#show-alerts").setAttribute("aria-label", `Alerts, ${n} unread`);
  }

  function renderAlerts() {
    renderCount();
    if (!$("#alerts").open) return;
    const list = alerts.list.slice().reverse();
    $("#alerts-body").replaceChildren(list.length ? ui.h("ul", { class: "alerts" }, list.map(alertItem)) : ui.h("p", null, "No alerts."));
    $("#alerts-ack-all").hidden = unread() === 0;
  }

  // The last 30 days of alerts (spind keeps the last 1,000).
  async function loadAlerts() {
    try {
      alerts.list = (await ui.rpc("list_alerts", { since: nowS() - 30 * DAY })) || [];
    } catch (e) {
      alerts.list = [];
      if (e.code === -3) $("#show-alerts").hidden = true; // history off: no alerts
    }
    renderAlerts();
  }

  function onAlert(a) {
    if (!a || typeof a.id !== "number") return;
    const old = alerts.list.findIndex((x) => x.id === a.id);
    if (old >= 0) alerts.list[old] = a;
    else alerts.list.push(a);
    if (alerts.list.length > 1000) alerts.list.splice(0, alerts.list.length - 1000);
    renderAlerts();
    if (!a.acked && old < 0) ui.toast(`${KIND_TEXT[a.kind] || a.kind}${a.device ? ": " + deviceName(a.device) : ""}`);
  }

  function init(helpers) {
    ui = helpers;
    $("#show-devices").addEventListener("click", openList);
    $("#devices-close").addEventListener("click", () => $("#devices").close());
    $("#device-close").addEventListener("click", () => $("#device").close());
    $("#device-back").addEventListener("click", () => {
      $("#device").close();
      openList();
    });
    $("#show-alerts").addEventListener("click", () => {
      if (!$("#alerts").open) $("#alerts").showModal();
      renderAlerts();
      loadAlerts();
    });
    $("#alerts-close").addEventListener("click", () => $("#alerts").close());
    $("#alerts-ack-all").addEventListener("click", () => ui.act("Mark all read", async () => {
      for (const a of alerts.list.filter((x) => !x.acked)) {
        await ui.rpc("ack_alert", { id: a.id });
        a.acked = true;
      }
      renderAlerts();
    }));
    window.addEventListener("resize", () => {
      const c = $("#history-chart");
      if (c && $("#device").open) drawChart(c);
    });
  }

  return {
    init, openList, openDevice, onAlert, loadAlerts, deviceLabel,
    // For the tests: what the chart and the views show.
    chart: () => ({ range: page.shown, from: page.from, to: page.to, buckets: page.buckets.length,
      bytes_in: sum(page.buckets, "bytes_in"), bytes_out: sum(page.buckets, "bytes_out"),
      with_traffic: page.buckets.filter((b) => b.bytes_in || b.bytes_out).length }),
  };
})();
