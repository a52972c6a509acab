// A force-directed graph on a canvas: our own small simulation (semi-implicit Euler with
// damping and a cooling "alpha", repulsion between nearby nodes through a uniform grid, springs
// along edges, weak gravity), pan/zoom/drag with pointer events, hit testing for clicks.
//
// The graph knows only geometry and looks; the app owns the meaning (nodes, flows, lists) and
// sets visual properties (label, radius, colours, alpha) on the node/edge objects it gets back.
"use strict";

(function (global) {
  const CELL = 110; // grid cell = repulsion cut-off distance (world units)
  const REPULSION = 60;
  const SPRING = 0.03;
  const GRAVITY = 0.004;
  const DAMPING = 0.62;
  const MAX_V = 40;
  const ALPHA_MIN = 0.004;
  const ALPHA_DECAY = 0.985;

  class Graph {
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d", { alpha: false });
      this.opts = opts || {};
      this.nodes = new Map(); // id -> node
      this.edges = new Map(); // key -> edge
      this.alpha = 1;
      this.scale = 1;
      this.tx = 0; // screen = world * scale + t (CSS pixels)
      this.ty = 0;
      this.autoFit = true;
      this.dirty = true;
      this.selectedNode = null;
      this.selectedEdge = null;
      this.hover = null;
      this.pointers = new Map();
      this.frameStats = { count: 0, work: [], intervals: [], last: 0 };
      this.measure = false;
      this.resize();
      this.bindEvents();
      const loop = (t) => {
        this.frame(t);
        requestAnimationFrame(loop);
      };
      requestAnimationFrame(loop);
    }

    // ---- model ---------------------------------------------------------------------------

    // Adds (placed near its peers, if any are known) or returns the node with this id.
    upsertNode(id, near) {
      let n = this.nodes.get(id);
      if (n) return n;
      let x = 0, y = 0, k = 0;
      for (const pid of near || []) {
        const p = this.nodes.get(pid);
        if (p) { x += p.x; y += p.y; k++; }
      }
      const a = Math.random() * Math.PI * 2;
      if (k) {
        x = x / k + Math.cos(a) * 70;
        y = y / k + Math.sin(a) * 70;
      } else {
        const r = 40 + Math.sqrt(this.nodes.size) * 25;
        x = Math.cos(a) * r;
        y = Math.sin(a) * r;
      }
      n = {
        id, x, y, vx: 0, vy: 0, fixed: false, r: 6, label: String(id), fill: "#64748b",
        stroke: null, strokeWidth: 0, alpha: 1, degree: 0, dashed: false,
      };
      this.nodes.set(id, n);
      this.alpha = Math.max(this.alpha, 0.35);
      this.dirty = true;
      return n;
    }

    removeNode(id) {
      const n = this.nodes.get(id);
      if (!n) return;
      for (const [k, e] of this.edges) if (e.a === n || e.b === n) this.removeEdge(k);
      this.nodes.delete(id);
      if (this.selectedNode === id) this.selectedNode = null;
      this.alpha = Math.max(this.alpha, 0.1);
      this.dirty = true;
    }

    upsertEdge(key, fromId, toId) {
      let e = this.edges.get(key);
      if (e) return e;
      const a = this.upsertNode(fromId, [toId]);
      const b = this.upsertNode(toId, [fromId]);
      e = { key, a, b, width: 1, color: "#94a3b8", dash: false, label: "", alpha: 1 };
      a.degree++;
      b.degree++;
      this.edges.set(key, e);
      this.alpha = Math.max(this.alpha, 0.25);
      this.dirty = true;
      return e;
    }

    removeEdge(key) {
      const e = this.edges.get(key);
      if (!e) return;
      e.a.degree--;
      e.b.degree--;
      this.edges.delete(key);
      if (this.selectedEdge === key) this.selectedEdge = null;
      this.dirty = true;
    }

    clear() {
      this.nodes.clear();
      this.edges.clear();
      this.selectedNode = this.selectedEdge = null;
      this.autoFit = true;
      this.alpha = 1;
      this.dirty = true;
    }

    // ---- simulation ----------------------------------------------------------------------

    step() {
      const nodes = Array.from(this.nodes.values());
      const n = nodes.length;
      if (!n) return;
      const alpha = this.alpha;
      // Uniform grid for short-range repulsion.
      const grid = new Map();
      for (let i = 0; i < n; i++) {
        const p = nodes[i];
        p.fx = -p.x * GRAVITY;
        p.fy = -p.y * GRAVITY;
        const cx = Math.floor(p.x / CELL), cy = Math.floor(p.y / CELL);
        p.cx = cx;
        p.cy = cy;
        const key = cx * 73856093 ^ cy * 19349663;
        let cell = grid.get(key);
        if (!cell) grid.set(key, (cell = []));
        cell.push(p);
      }
      const cut2 = CELL * CELL;
      for (let i = 0; i < n; i++) {
        const p = nodes[i];
        for (let dx = -1; dx <= 1; dx++) {
          for (let dy = -1; dy <= 1; dy++) {
            const cell = grid.get((p.cx + dx) * 73856093 ^ (p.cy + dy) * 19349663);
            if (!cell) continue;
            for (let j = 0; j < cell.length; j++) {
              const q = cell[j];
              if (q === p) continue;
              let ddx = p.x - q.x, ddy = p.y - q.y;
              let d2 = ddx * ddx + ddy * ddy;
              if (d2 > cut2) continue;
              if (d2 < 1) { // coincident: push apart in a random direction
                ddx = Math.random() - 0.5;
                ddy = Math.random() - 0.5;
                d2 = 1;
              }
              const d = Math.sqrt(d2);
              let f = REPULSION / d * (1 - d / CELL);
              // Overlapping discs push apart hard, whatever the temperature.
              const overlap = p.r + q.r + 6 - d;
              if (overlap > 0) f += overlap * 0.5 / alpha;
              p.fx += ddx / d * f;
              p.fy += ddy / d * f;
            }
          }
        }
      }
      for (const e of this.edges.values()) {
        const a = e.a, b = e.b;
        const dx = b.x - a.x, dy = b.y - a.y;
        const d = Math.sqrt(dx * dx + dy * dy) || 1;
        const rest = 50 + a.r + b.r;
        // Springs of hubs are softer, so a device with hundreds of peers does not collapse.
        const k = SPRING / Math.sqrt(Math.min(a.degree, b.degree) || 1);
        const f = (d - rest) * k;
        const fx = dx / d * f, fy = dy / d * f;
        a.fx += fx; a.fy += fy;
        b.fx -= fx; b.fy -= fy;
      }
      for (let i = 0; i < n; i++) {
        const p = nodes[i];
        if (p.fixed) { p.vx = p.vy = 0; continue; }
        p.vx = (p.vx + p.fx * alpha) * DAMPING;
        p.vy = (p.vy + p.fy * alpha) * DAMPING;
        const v2 = p.vx * p.vx + p.vy * p.vy;
        if (v2 > MAX_V * MAX_V) {
          const s = MAX_V / Math.sqrt(v2);
          p.vx *= s;
          p.vy *= s;
        }
        p.x += p.vx;
        p.y += p.vy;
      }
      this.alpha *= ALPHA_DECAY;
      this.dirty = true;
    }

    // ---- view ----------------------------------------------------------------------------

    resize() {
      const r = this.canvas.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      this.w = Math.max(1, r.width);
      this.h = Math.max(1, r.height);
      this.dpr = dpr;
      this.canvas.width = Math.round(this.w * dpr);
      this.canvas.height = Math.round(this.h * dpr);
      this.dirty = true;
    }

    toWorld(sx, sy) {
      return [(sx - this.tx) / this.scale, (sy - this.ty) / this.scale];
    }

    // Position of a node in viewport CSS pixels (for tests and for placing popups).
    screenPos(id) {
      const n = this.nodes.get(id);
      if (!n) return null;
      const r = this.canvas.getBoundingClientRect();
      return { x: r.left + n.x * this.scale + this.tx, y: r.top + n.y * this.scale + this.ty, r: n.r * this.scale };
    }

    bounds() {
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const n of this.nodes.values()) {
        x0 = Math.min(x0, n.x - n.r); y0 = Math.min(y0, n.y - n.r);
        x1 = Math.max(x1, n.x + n.r); y1 = Math.max(y1, n.y + n.r);
      }
      return x0 === Infinity ? null : [x0, y0, x1, y1];
    }

    fitTarget() {
      const b = this.bounds();
      if (!b) return { scale: 1, tx: this.w / 2, ty: this.h / 2 };
      const pad = 60;
      const bw = Math.max(b[2] - b[0], 1), bh = Math.max(b[3] - b[1], 1);
      const scale = Math.min(2, Math.max(0.05, Math.min((this.w - 2 * pad) / bw, (this.h - 2 * pad) / bh)));
      return { scale, tx: this.w / 2 - (b[0] + b[2]) / 2 * scale, ty: this.h / 2 - (b[1] + b[3]) / 2 * scale };
    }

    fit(animate) {
      const t = this.fitTarget();
      if (animate) {
        const close = Math.abs(t.scale - this.scale) < 0.002 * this.scale &&
          Math.abs(t.tx - this.tx) < 0.5 && Math.abs(t.ty - this.ty) < 0.5;
        if (close) return; // already there: no redraw, so an idle page stays idle
        const k = 0.15;
        this.scale += (t.scale - this.scale) * k;
        this.tx += (t.tx - this.tx) * k;
        this.ty += (t.ty - this.ty) * k;
      } else {
        Object.assign(this, t);
      }
      this.dirty = true;
    }

    // Pans so that node `id` sits at (sx, sy) in canvas CSS pixels (stops auto-fitting).
    centerOn(id, sx, sy) {
      const n = this.nodes.get(id);
      if (!n) return;
      this.tx = sx - n.x * this.scale;
      this.ty = sy - n.y * this.scale;
      this.autoFit = false;
      this.dirty = true;
    }

    zoomAt(sx, sy, factor) {
      const s = Math.min(8, Math.max(0.03, this.scale * factor));
      const [wx, wy] = this.toWorld(sx, sy);
      this.scale = s;
      this.tx = sx - wx * s;
      this.ty = sy - wy * s;
      this.autoFit = false;
      this.dirty = true;
    }

    panBy(dx, dy) {
      this.tx += dx;
      this.ty += dy;
      this.autoFit = false;
      this.dirty = true;
    }

    // ---- hit testing ---------------------------------------------------------------------

    nodeAt(sx, sy) {
      const [wx, wy] = this.toWorld(sx, sy);
      const slop = 6 / this.scale;
      let best = null, bestD = Infinity;
      for (const n of this.nodes.values()) {
        if (n.alpha <= 0) continue;
        const d = Math.hypot(n.x - wx, n.y - wy);
        if (d <= n.r + slop && d < bestD) { best = n; bestD = d; }
      }
      return best;
    }

    edgeAt(sx, sy) {
      const [wx, wy] = this.toWorld(sx, sy);
      const tol = 6 / this.scale;
      let best = null, bestD = tol;
      for (const e of this.edges.values()) {
        const ax = e.a.x, ay = e.a.y, bx = e.b.x, by = e.b.y;
        const dx = bx - ax, dy = by - ay;
        const l2 = dx * dx + dy * dy || 1;
        const t = Math.max(0, Math.min(1, ((wx - ax) * dx + (wy - ay) * dy) / l2));
        const d = Math.hypot(ax + t * dx - wx, ay + t * dy - wy);
        if (d < bestD) { best = e; bestD = d; }
      }
      return best;
    }

    bindEvents() {
      const c = this.canvas;
      const local = (ev) => {
        const r = c.getBoundingClientRect();
        return [ev.clientX - r.left, ev.clientY - r.top];
      };
      c.addEventListener("pointerdown", (ev) => {
        c.setPointerCapture(ev.pointerId);
        const [x, y] = local(ev);
        this.pointers.set(ev.pointerId, { x, y, x0: x, y0: y });
        if (this.pointers.size === 1) {
          const n = this.nodeAt(x, y);
          this.drag = { node: n, moved: false };
        } else {
          this.drag = null; // pinch
        }
      });
      c.addEventListener("pointermove", (ev) => {
        const [x, y] = local(ev);
        const p = this.pointers.get(ev.pointerId);
        if (!p) {
          const n = this.nodeAt(x, y);
          const h = n ? n.id : null;
          if (h !== this.hover) { this.hover = h; this.dirty = true; }
          c.style.cursor = n ? "pointer" : (this.edgeAt(x, y) ? "pointer" : "grab");
          return;
        }
        if (this.pointers.size === 2) {
          const [a, b] = Array.from(this.pointers.values());
          const before = Math.hypot(a.x - b.x, a.y - b.y);
          p.x = x; p.y = y;
          const after = Math.hypot(a.x - b.x, a.y - b.y);
          if (before > 0) this.zoomAt((a.x + b.x) / 2, (a.y + b.y) / 2, after / before);
          return;
        }
        const dx = x - p.x, dy = y - p.y;
        p.x = x; p.y = y;
        const d = this.drag;
        if (!d) return;
        if (!d.moved && Math.hypot(x - p.x0, y - p.y0) < 5) return;
        d.moved = true;
        if (d.node) {
          const [wx, wy] = this.toWorld(x, y);
          d.node.x = wx; d.node.y = wy; d.node.fixed = true;
          this.alpha = Math.max(this.alpha, 0.08);
          this.autoFit = false;
          this.dirty = true;
        } else {
          c.style.cursor = "grabbing";
          this.panBy(dx, dy);
        }
      });
      const up = (ev) => {
        const [x, y] = local(ev);
        const had = this.pointers.delete(ev.pointerId);
        const d = this.drag;
        this.drag = null;
        if (!had || !d || d.moved || ev.type === "pointercancel") return;
        if (d.node) return this.emit("node", d.node.id);
        const e = this.edgeAt(x, y);
        if (e) return this.emit("edge", e.key);
        this.emit("background", null);
      };
      c.addEventListener("pointerup", up);
      c.addEventListener("pointercancel", up);
      c.addEventListener("dblclick", (ev) => {
        const [x, y] = local(ev);
        const n = this.nodeAt(x, y);
        if (n && n.fixed) { n.fixed = false; this.alpha = Math.max(this.alpha, 0.1); }
      });
      c.addEventListener("wheel", (ev) => {
        ev.preventDefault();
        const [x, y] = local(ev);
        this.zoomAt(x, y, Math.exp(-ev.deltaY * 0.0015));
      }, { passive: false });
      c.addEventListener("keydown", (ev) => {
        const k = ev.key, step = 40;
        if (k === "ArrowLeft") this.panBy(step, 0);
        else if (k === "ArrowRight") this.panBy(-step, 0);
        else if (k === "ArrowUp") this.panBy(0, step);
        else if (k === "ArrowDown") this.panBy(0, -step);
        else if (k === "+" || k === "=") this.zoomAt(this.w / 2, this.h / 2, 1.2);
        else if (k === "-") this.zoomAt(this.w / 2, this.h / 2, 1 / 1.2);
        else if (k === "0") { this.autoFit = true; }
        else return;
        ev.preventDefault();
      });
      window.addEventListener("resize", () => this.resize());
    }

    emit(what, arg) {
      const f = this.opts["on_" + what];
      if (f) f(arg);
    }

    // ---- drawing -------------------------------------------------------------------------

    frame(t) {
      const st = this.frameStats;
      if (st.last) st.intervals.push(t - st.last);
      st.last = t;
      const t0 = performance.now();
      if (this.opts.beforeFrame) this.opts.beforeFrame(t);
      if (this.alpha > ALPHA_MIN) this.step();
      if (this.autoFit && this.nodes.size) this.fit(true);
      if (this.dirty) {
        this.draw();
        this.dirty = false;
      }
      st.work.push(performance.now() - t0);
      st.count++;
      if (st.work.length > 2000) { st.work.splice(0, 1000); st.intervals.splice(0, 1000); }
    }

    draw() {
      const ctx = this.ctx, s = this.scale, dpr = this.dpr;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = this.opts.background || "#f8fafc";
      ctx.fillRect(0, 0, this.w, this.h);
      ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * this.tx, dpr * this.ty);
      const [vx0, vy0] = this.toWorld(-50, -50);
      const [vx1, vy1] = this.toWorld(this.w + 50, this.h + 50);
      const inView = (n) => n.x >= vx0 && n.x <= vx1 && n.y >= vy0 && n.y <= vy1;
      const sel = this.selectedNode;

      // Edges: batched into one path per style.
      const batches = new Map();
      for (const e of this.edges.values()) {
        if (e.a.alpha <= 0 || e.b.alpha <= 0) continue;
        if (!inView(e.a) && !inView(e.b)) continue;
        const hl = e.key === this.selectedEdge || (sel != null && (e.a.id === sel || e.b.id === sel));
        const alpha = Math.round(Math.min(e.a.alpha, e.b.alpha, e.alpha) * 4) / 4;
        const w = hl ? Math.max(2.5, e.width) : Math.round(e.width * 2) / 2;
        const color = hl && e.color !== "#dc2626" ? "#0f172a" : e.color; // blocked stays red
        const key = color + "|" + w + "|" + (e.dash ? 1 : 0) + "|" + alpha + "|" + (hl ? 1 : 0);
        let b = batches.get(key);
        if (!b) batches.set(key, (b = []));
        b.push(e);
      }
      ctx.lineCap = "butt";
      // Level of detail: while a big graph is moving, edges are hairlines (wide strokes are
      // what costs a software rasteriser most); widths come back once the layout has settled.
      const hairlines = this.edges.size > 400 && this.alpha > 0.03;
      for (const [key, list] of batches) {
        const [color, w, dash, alpha, hl] = key.split("|");
        ctx.globalAlpha = +alpha;
        ctx.strokeStyle = color;
        ctx.lineWidth = hairlines && hl === "0" ? 1 / s : +w / Math.max(s, 0.35);
        ctx.setLineDash(dash === "1" ? [6 / s, 5 / s] : []);
        ctx.beginPath();
        for (const e of list) {
          ctx.moveTo(e.a.x, e.a.y);
          ctx.lineTo(e.b.x, e.b.y);
        }
        ctx.stroke();
      }
      ctx.setLineDash([]);

      // Edge labels (service names): when zoomed in and the graph is small, or for the selection.
      const fontPx = 10 / s;
      ctx.font = `${fontPx}px system-ui, sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      const manyEdges = this.edges.size > 300 || s < 0.6;
      for (const e of this.edges.values()) {
        if (!e.label || e.a.alpha <= 0 || e.b.alpha <= 0) continue;
        const hl = e.key === this.selectedEdge || (sel != null && (e.a.id === sel || e.b.id === sel));
        if (manyEdges && !hl) continue;
        const mx = (e.a.x + e.b.x) / 2, my = (e.a.y + e.b.y) / 2;
        if (mx < vx0 || mx > vx1 || my < vy0 || my > vy1) continue;
        ctx.globalAlpha = Math.min(e.a.alpha, e.b.alpha);
        ctx.fillStyle = "#475569";
        ctx.fillText(e.label, mx, my - 6 / s);
      }

      // Nodes.
      for (const n of this.nodes.values()) {
        if (n.alpha <= 0 || !inView(n)) continue;
        ctx.globalAlpha = n.alpha;
        ctx.beginPath();
        ctx.arc(n.x, n.y, n.r, 0, Math.PI * 2);
        ctx.fillStyle = n.fill;
        ctx.fill();
        if (n.stroke) {
          ctx.lineWidth = n.strokeWidth / Math.max(s, 0.5);
          ctx.strokeStyle = n.stroke;
          ctx.stroke();
        }
        if (n.id === sel || n.id === this.hover) {
          ctx.beginPath();
          ctx.arc(n.x, n.y, n.r + 4 / s, 0, Math.PI * 2);
          ctx.lineWidth = 2 / s;
          ctx.strokeStyle = n.id === sel ? "#0f172a" : "#64748b";
          ctx.stroke();
        }
      }

      // Node labels: all when readable, otherwise only devices / selection / hover.
      const lf = 12 / Math.max(s, 0.6);
      ctx.font = `${lf}px system-ui, sans-serif`;
      ctx.textBaseline = "top";
      ctx.lineJoin = "round";
      ctx.lineWidth = 3 / s;
      ctx.strokeStyle = this.opts.background || "#f8fafc";
      const few = this.nodes.size <= 150 && s >= 0.45;
      // Labels never overlap: the selection and hover first, then devices, then the biggest
      // nodes; a label that would cover one already placed is left out (it shows on hover).
      const want = [];
      for (const n of this.nodes.values()) {
        if (n.alpha <= 0 || !inView(n)) continue;
        const important = n.id === sel || n.id === this.hover || (n.device && s >= 0.25);
        if (!few && !important) continue;
        const rank = n.id === sel ? 3 : n.id === this.hover ? 2 : n.device ? 1 : 0;
        want.push({ n, rank });
      }
      want.sort((a, b) => b.rank - a.rank || b.n.r - a.n.r);
      const placed = [];
      for (const { n } of want) {
        if (n._lw == null || n._lwText !== n.label || n._lwFont !== lf) {
          n._lw = ctx.measureText(n.label).width;
          n._lwText = n.label;
          n._lwFont = lf;
        }
        const y = n.y + n.r + 3 / s;
        const box = { x0: n.x - n._lw / 2, x1: n.x + n._lw / 2, y0: y, y1: y + lf * 1.15, id: n.id };
        if (placed.some((p) => p.x0 < box.x1 && box.x0 < p.x1 && p.y0 < box.y1 && box.y0 < p.y1)) continue;
        placed.push(box);
        ctx.globalAlpha = n.alpha;
        ctx.strokeText(n.label, n.x, y);
        ctx.fillStyle = "#0f172a";
        ctx.fillText(n.label, n.x, y);
      }
      this.labelBoxes = placed;
      ctx.globalAlpha = 1;
    }

    // Frame statistics since the last reset: per-frame work (simulation + drawing, ms) and the
    // interval between animation frames (ms), as averages / 95th percentiles / maxima.
    stats() {
      const q = (a, p) => {
        if (!a.length) return 0;
        const s = a.slice().sort((x, y) => x - y);
        return s[Math.min(s.length - 1, Math.floor(s.length * p))];
      };
      const avg = (a) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
      const st = this.frameStats;
      return {
        frames: st.work.length,
        workAvg: avg(st.work), workP95: q(st.work, 0.95), workMax: Math.max(0, ...st.work),
        intervalAvg: avg(st.intervals), intervalP95: q(st.intervals, 0.95), intervalMax: Math.max(0, ...st.intervals),
      };
    }

    resetStats() {
      this.frameStats = { count: 0, work: [], intervals: [], last: 0 };
    }
  }

  // The running traffic chart: bytes per second over the last five minutes.
  class TrafficChart {
    constructor(canvas, seconds) {
      this.canvas = canvas;
      this.seconds = seconds || 300;
      this.samples = new Map(); // unix second -> bytes
      this.now = Math.floor(Date.now() / 1000);
    }

    add(sec, bytes) {
      this.samples.set(sec, (this.samples.get(sec) || 0) + bytes);
      this.now = Math.max(this.now, sec);
    }

    clear() {
      this.samples.clear();
    }

    draw(nowSec) {
      const c = this.canvas;
      const r = c.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(1, r.width), h = Math.max(1, r.height);
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const ctx = c.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const end = Math.max(nowSec || 0, this.now);
      const start = end - this.seconds + 1;
      for (const k of this.samples.keys()) if (k < start - 5) this.samples.delete(k);
      let max = 0;
      for (let t = start; t <= end; t++) max = Math.max(max, this.samples.get(t) || 0);
      const top = niceCeil(Math.max(max, 1000));
      const left = 58, bottom = h - 16, plotH = bottom - 8, plotW = w - left - 6;
      ctx.strokeStyle = "#cbd5e1";
      ctx.lineWidth = 1;
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = "#475569";
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let i = 0; i <= 2; i++) {
        const y = bottom - plotH * i / 2;
        ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - 6, y); ctx.stroke();
        ctx.fillText(formatRate(top * i / 2), left - 4, y);
      }
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (let m = 5; m >= 0; m--) {
        const x = left + plotW * (1 - m * 60 / this.seconds);
        ctx.fillText(m ? `-${m} min` : "now", Math.min(x, w - 16), bottom + 2);
      }
      ctx.beginPath();
      ctx.moveTo(left, bottom);
      for (let t = start; t <= end; t++) {
        const x = left + plotW * (t - start) / (this.seconds - 1);
        ctx.lineTo(x, bottom - plotH * (this.samples.get(t) || 0) / top);
      }
      ctx.lineTo(left + plotW, bottom);
      ctx.closePath();
      ctx.fillStyle = "rgba(14,165,233,0.25)";
      ctx.fill();
      ctx.strokeStyle = "#0284c7";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function formatBytes(n) {
    const u = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + " " + u[i];
  }

  function formatRate(n) {
    return formatBytes(n) + "/s";
  }

  global.SpinGraph = Graph;
  global.TrafficChart = TrafficChart;
  global.formatBytes = formatBytes;
})(window);
