// The bedtime editor of a device's side panel (issue 13): the device's schedule
// (list_device_schedules), presets, a free text field, save (set_device_schedule) and remove
// (remove_device_schedule); the RPC's error is shown as it came. app.js calls
// window.spinBedtime.section(mac, { rpc, h }) from renderNodePanel; everything else is here.
// Text from the network is put into the page with textContent only (strict CSP: no inline
// script or style).
"use strict";

(function () {
  const PRESETS = [
    { label: "School nights", schedule: "Mo-Th,Su 21:00-07:00" },
    { label: "Every night", schedule: "Mo-Su 22:00-07:00" },
  ];
  // Per device (lowercase MAC): the schedule last read (null: none; undefined: not read yet)
  // and what the user is typing, kept across the panel's re-renders.
  const known = new Map();
  const drafts = new Map();
  // When each device's schedule was read (ms): the panel re-renders on every update of the
  // node, which need not cost a call each time.
  const readAt = new Map();
  const REREAD_MS = 5000;

  function section(mac, { rpc, h }) {
    const key = mac.toLowerCase();
    const current = h("p", { "data-field": "bedtime-current" });
    const message = h("p", { class: "bedtime-message", "data-field": "bedtime-message", role: "status" });
    const input = h("input", {
      id: "bedtime-input", name: "schedule", autocomplete: "off", required: true,
      placeholder: "Mo-Fr 21:00-07:00; Sa,Su 22:00-08:00", "aria-label": "Bedtime schedule",
    });
    const remove = h("button", { type: "button", "data-action": "bedtime-remove" }, "Remove bedtime");

    function show() {
      const s = known.get(key);
      current.textContent = s === undefined ? "Loading…" : s === null ? "No bedtime: the internet is always on."
        : `Internet off: ${s}`;
      remove.disabled = !s;
    }

    async function run(what, action) {
      message.textContent = "";
      try {
        await action();
        const list = await rpc("list_device_schedules");
        const mine = (list || []).find((d) => String(d.device).toLowerCase() === key);
        known.set(key, mine ? mine.schedule : null);
        readAt.set(key, Date.now());
        show();
        message.textContent = what;
      } catch (e) {
        message.textContent = "Not saved: " + e.message;
      }
    }

    const save = (schedule) => run(`Bedtime set: ${schedule}`, async () => {
      await rpc("set_device_schedule", { device: mac, schedule });
      drafts.delete(key);
      input.value = "";
    });

    input.value = drafts.get(key) || "";
    input.addEventListener("input", () => drafts.set(key, input.value));
    remove.addEventListener("click", () => run("Bedtime removed", () => rpc("remove_device_schedule", { device: mac })));
    const form = h("form", { class: "bedtime-form", onsubmit: (ev) => { ev.preventDefault(); save(input.value.trim()); } },
      input, h("button", { type: "submit", "data-action": "bedtime-save" }, "Save"));
    const presets = h("div", { class: "actions bedtime-presets" }, PRESETS.map((p) => h("button", {
      type: "button", "data-preset": p.schedule, title: p.schedule, onclick: () => save(p.schedule),
    }, `${p.label} (${p.schedule})`)));

    show();
    if (known.get(key) === undefined || Date.now() - (readAt.get(key) || 0) > REREAD_MS) run("", async () => {});
    return h("section", { class: "bedtime", "data-device": key },
      h("h3", null, "Bedtime"), current, presets, form, h("div", { class: "actions" }, remove), message);
  }

  window.spinBedtime = { section };
})();
