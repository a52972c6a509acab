// Household controls (issue 13): in a device's side panel the services it may use (a switch per
// service: set_service for that device) and Pause (15 min, 1 hour, until tomorrow 06:00:
// pause_device; the pause's end and Unpause from list_paused_devices/unpause_device); and the
// network-wide "Lists" dialog: the blocklists with their counts (list_blocklists) and the
// service switches for the whole network. app.js hands in its helpers (rpc, h, act, toast) with
// SpinControls.init and asks for the panel section with SpinControls.devicePanel.
// All text from the network goes into the page with textContent (through h), never as HTML.
"use strict";

window.SpinControls = (function () {
  let ui = null; // { rpc, h, act, toast }
  // Per device MAC, what spind said last: { services, paused } (re-rendered from it while the
  // panel is redrawn for other reasons, refreshed when the panel is opened or after a change).
  const cache = new Map();

  const fmtWhen = (sec) => new Date(sec * 1000).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });

  // 06:00 local time on the next day, as unix seconds.
  function tomorrowMorning(now) {
    const d = new Date(now);
    d.setDate(d.getDate() + 1);
    d.setHours(6, 0, 0, 0);
    return Math.floor(d.getTime() / 1000);
  }

  async function load(mac) {
    const [services, paused] = await Promise.all([
      ui.rpc("list_services", { device: mac }),
      ui.rpc("list_paused_devices"),
    ]);
    const entry = { services: services || [], paused: (paused || []).find((p) => p.device === mac) || null };
    cache.set(mac, entry);
    return entry;
  }

  // One switch: checked means the service may be used; off means set_service blocked.
  function serviceSwitch(s, idPrefix, onChange, lockedNote) {
    const h = ui.h;
    const id = `${idPrefix}-${s.id}`;
    const locked = !!lockedNote;
    return h("li", { class: "service" + (s.blocked ? " off" : "") },
      h("label", { for: id }, s.name, locked ? h("small", null, " " + lockedNote) : null),
      h("input", {
        type: "checkbox", role: "switch", id, "data-service": s.id,
        checked: !s.blocked, disabled: locked,
        "aria-label": `${s.name} allowed`,
        onchange: (ev) => onChange(s, !ev.target.checked, ev.target),
      }));
  }

  function renderDevice(box, mac, entry) {
    const h = ui.h;
    const reload = () => load(mac).then((e) => renderDevice(box, mac, e));
    const setService = (s, blocked, input) => ui.act(blocked ? `Block ${s.name}` : `Allow ${s.name}`, async () => {
      input.disabled = true;
      try {
        await ui.rpc("set_service", { service: s.id, device: mac, blocked });
        ui.toast(`${s.name} ${blocked ? "blocked" : "allowed"} for this device`);
      } finally {
        await reload();
      }
    });
    const pause = (what, until) => ui.act(`Pause (${what})`, async () => {
      await ui.rpc("pause_device", { device: mac, until });
      ui.toast(`Paused until ${fmtWhen(until)}`);
      await reload();
    });
    const now = Date.now();
    const paused = entry.paused;
    const pauseBox = h("div", { class: "pause" },
      h("h3", null, "Pause the internet"),
      paused ? h("p", { class: "paused", "data-field": "paused-until" }, `Paused until ${fmtWhen(paused.until)}`) : null,
      h("div", { class: "actions" },
        h("button", { type: "button", "data-pause": "15m", onclick: () => pause("15 min", Math.floor(now / 1000) + 15 * 60) }, "15 min"),
        h("button", { type: "button", "data-pause": "1h", onclick: () => pause("1 hour", Math.floor(now / 1000) + 3600) }, "1 hour"),
        h("button", { type: "button", "data-pause": "tomorrow", onclick: () => pause("until tomorrow", tomorrowMorning(now)) }, "Until tomorrow"),
        paused ? h("button", { type: "button", "data-action": "unpause", onclick: () => ui.act("Unpause", async () => {
          await ui.rpc("unpause_device", { device: mac });
          ui.toast("Unpaused");
          await reload();
        }) }, "Unpause") : null));
    const list = h("ul", { class: "services" }, entry.services.map((s) =>
      serviceSwitch(s, "svc-dev", setService, s.blocked_everywhere ? "(blocked for the whole network)" : null)));
    box.replaceChildren(pauseBox, h("h3", null, "Services"), list);
  }

  // The section of a device's panel; filled from the cache at once and from spind when `fresh`.
  function devicePanel(info, fresh) {
    const box = ui.h("section", { class: "controls", "data-device": info.mac });
    const cached = cache.get(info.mac);
    if (cached) renderDevice(box, info.mac, cached);
    else box.append(ui.h("p", null, "Loading services…"));
    if (fresh || !cached) {
      load(info.mac).then((e) => {
        if (box.isConnected) renderDevice(box, info.mac, e);
      }).catch((e) => box.replaceChildren(ui.h("p", null, "Could not load the services: " + e.message)));
    }
    return box;
  }

  // ---- the network-wide Lists dialog -------------------------------------------------------
  function renderBlocklists(r) {
    const h = ui.h;
    const lists = (r && r.lists) || [];
    const rows = lists.map((c) => {
      const name = c.name || c.url || c.file || "list";
      const parts = [`${c.names} names`, `${c.skipped} lines skipped`];
      if (c.duplicates) parts.push(`${c.duplicates} duplicates`);
      if (c.blocked_today != null) parts.push(`${c.blocked_today} blocked today`);
      if (c.updated) parts.push(`downloaded ${new Date(c.updated * 1000).toLocaleString()}`);
      if (c.devices) parts.push(`for ${c.devices.length} device${c.devices.length === 1 ? "" : "s"}`);
      // The household's own lists (they have an id) can be removed; the config's cannot.
      const remove = c.id == null ? null : h("button", {
        type: "button", class: "small", "data-remove-list": String(c.id), "aria-label": `Remove ${name}`,
        onclick: () => ui.act(`Remove ${name}`, async () => {
          await ui.rpc("remove_blocklist", { id: c.id });
          ui.toast(`${name} removed`);
          await openLists();
        }),
      }, "Remove");
      return h("li", { "data-list": name },
        h("span", null, name, h("small", null, " " + parts.join(" · ")), c.error ? h("small", { class: "error" }, " " + c.error) : null),
        remove);
    });
    const total = [`${(r && r.names) || 0} names in force`];
    if (r && r.blocked_today != null) total.push(`${r.blocked_today} queries blocked today`);
    return [h("p", { class: "note", "data-field": "blocklist-total" }, total.join(" · ")),
      lists.length ? h("ul", { class: "iplist blocklists" }, rows) : h("p", null, "No blocklist is configured.")];
  }

  async function openLists() {
    const h = ui.h;
    const d = document.querySelector("#controls");
    const lists = document.querySelector("#controls-blocklists");
    const services = document.querySelector("#controls-services");
    if (!d.open) d.showModal();
    const [bl, sv] = await Promise.all([
      ui.rpc("list_blocklists").catch((e) => ({ error: e.message })),
      ui.rpc("list_services").catch((e) => ({ error: e.message })),
    ]);
    lists.replaceChildren(...(bl && bl.error && !bl.lists ? [h("p", null, "Could not load the blocklists: " + bl.error)] : renderBlocklists(bl)));
    if (sv && sv.error) {
      services.replaceChildren(h("p", null, "Could not load the services: " + sv.error));
      return;
    }
    const set = (s, blocked, input) => ui.act(blocked ? `Block ${s.name}` : `Allow ${s.name}`, async () => {
      input.disabled = true;
      try {
        await ui.rpc("set_service", { service: s.id, blocked });
        ui.toast(`${s.name} ${blocked ? "blocked" : "allowed"} for the whole network`);
        cache.clear(); // every device's view of it changed
      } finally {
        await openLists();
      }
    });
    services.replaceChildren(h("ul", { class: "services" }, sv.map((s) => serviceSwitch(s, "svc-all", set, null))));
  }

  function init(api) {
    ui = api;
    const btn = document.querySelector("#show-controls");
    if (!btn) return;
    btn.addEventListener("click", () => ui.act("Load lists", openLists));
    const form = document.querySelector("#blocklist-add");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const url = document.querySelector("#blocklist-url").value.trim();
      const name = document.querySelector("#blocklist-name").value.trim();
      ui.act("Add list", async () => {
        const params = name ? { url, name } : { url };
        await ui.rpc("add_blocklist", params); // spind refuses a bad URL or name, naming it
        form.reset();
        ui.toast(`${name || url} added; downloading`);
        await openLists();
      });
    });
    document.querySelector("#blocklist-refresh").addEventListener("click", () => ui.act("Download lists", async () => {
      await ui.rpc("refresh_blocklists", {});
      ui.toast("Downloading every list; the counts follow");
      await openLists();
    }));
    document.querySelector("#controls-close").addEventListener("click", () => document.querySelector("#controls").close());
  }

  return { init, devicePanel, tomorrowMorning };
})();
