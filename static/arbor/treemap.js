// The tree map (templates/conversations/_treemap_section.html): pan and zoom by mouse, wheel,
// touch (Panzoom, vendored in static/vendor/panzoom/) and keyboard; a preview of a node on hover or
// focus; a click opens the node's branch in the chat through the same POST as the list view
// (conversations:branch_open); a click on a dashed edge's number (or "e" on a node) fetches the map
// again with that straight stretch drawn in full (conversations:session_tree_map ?expand=).
// The SVG's markup is documented in conversations/treemap.py: circles in pre-order with their
// level (data-l), so a node's parent is the last node before it one level up.
(function () {
  "use strict";
  var PLACEHOLDER = "00000000-0000-4000-8000-000000000000";
  var PAN_STEP = 80;        // px per arrow key
  var ZOOM_STEP = 1.35;     // factor per + / − key
  var MIN_SCALE = 0.03, MAX_SCALE = 4;
  var CLICK_SLOP = 6;       // px a pointer may move between down and up and still be a click

  function TreeMap(section) {
    this.section = section;
    this.viewport = section.querySelector(".treemap-viewport");
    this.tip = section.querySelector(".treemap-tip");
    this.said = section.querySelector("#treemap-said");
    this.form = section.querySelector("form.treemap-open");
    this.openUrl = section.getAttribute("data-open-url");
    this.mapUrl = section.getAttribute("data-map-url");
    var query = new URLSearchParams(location.search);
    this.wanted = { expand: (query.get("expand") || "").split(",").filter(Boolean),
                    unfold: (query.get("unfold") || "").split(",").filter(Boolean) };
    this.focusIndex = -1;
    this.viewport.classList.add("live");
    section.querySelector(".treemap-tools").hidden = false;
    this.bindEvents();
    this.setup();
    this.show(this.shownIndex() >= 0 ? this.shownIndex() : 0, true);
  }

  // --- the drawing: index the nodes, bind Panzoom ---------------------------------------------

  TreeMap.prototype.setup = function () {
    this.svg = this.viewport.querySelector("svg.treemap-svg");
    var circles = this.svg.querySelectorAll("circle.n");
    var n = circles.length, stack = [], rows = [];
    this.nodes = new Array(n);
    this.byId = Object.create(null);
    for (var i = 0; i < n; i++) {
      var c = circles[i], level = +c.getAttribute("data-l");
      stack.length = level;
      var node = { el: c, id: c.getAttribute("data-run-id"), level: level, x: +c.getAttribute("cx"), y: +c.getAttribute("cy"),
                   parent: level > 0 ? stack[level - 1] : -1, children: [], index: i };
      if (node.parent >= 0) { this.nodes[node.parent].children.push(i); }
      stack[level] = i;
      (rows[level] = rows[level] || []).push(i);  // pre-order keeps each level left to right
      node.col = rows[level].length - 1;
      this.nodes[i] = node;
      this.byId[node.id] = i;
    }
    this.rows = rows;
    this.width = +this.svg.getAttribute("width");
    this.height = +this.svg.getAttribute("height");
    this.ox = this.oy = 0;  // Panzoom's transform origin for an SVG element inside the <svg>
    this.hidden = Object.create(null);  // run id below a collapsed stretch -> its label
    var self = this;
    this.svg.querySelectorAll("text.cl").forEach(function (t) { self.hidden[t.getAttribute("data-run-id")] = t; });
    if (this.pz) { this.pz.destroy(); }
    this.pz = window.Panzoom(this.svg.querySelector("g.treemap-root"), { canvas: true, animate: false, minScale: MIN_SCALE, maxScale: MAX_SCALE,
                                         step: 0.25, cursor: "grab", handleStartEvent: function (e) { e.preventDefault(); } });
  };

  TreeMap.prototype.shownIndex = function () {
    var el = this.svg.querySelector("circle.n.active");
    return el ? this.byId[el.getAttribute("data-run-id")] : -1;
  };

  // --- the view ---------------------------------------------------------------------------------
  // Panzoom sets ``transform: scale(s) translate(tx, ty)`` on the drawing's <g> with the origin o at
  // (0, 0), so the drawing's point p is shown at o + s * (p - o + t) in the viewport (the <svg>
  // fills the viewport: a frame rasterises what is in sight, not the whole drawing).

  TreeMap.prototype.view = function () { var t = this.pz.getPan(); return { s: this.pz.getScale(), x: t.x, y: t.y }; };
  TreeMap.prototype.toScreen = function (px, py, v) {
    v = v || this.view();
    return { x: this.ox + v.s * (px - this.ox + v.x), y: this.oy + v.s * (py - this.oy + v.y) };
  };
  // Scale s, and the drawing's point p shown at the viewport's point (sx, sy).
  TreeMap.prototype.place = function (s, px, py, sx, sy) {
    s = Math.min(MAX_SCALE, Math.max(MIN_SCALE, s));
    var x = (sx - this.ox) / s - px + this.ox, y = (sy - this.oy) / s - py + this.oy;
    this.pz.setOptions({ startScale: s, startX: x, startY: y });  // Panzoom pans to these once after it starts
    this.pz.zoom(s, { animate: false, force: true });
    this.pz.pan(x, y, { animate: false, force: true });
    this.hideTip();
  };
  TreeMap.prototype.centreOn = function (px, py, s) {
    this.place(s || this.view().s, px, py, this.viewport.clientWidth / 2, this.viewport.clientHeight / 2);
  };
  TreeMap.prototype.zoomBy = function (factor) {  // around the viewport's centre
    var v = this.view(), cx = this.viewport.clientWidth / 2, cy = this.viewport.clientHeight / 2;
    var px = (cx - this.ox) / v.s - v.x + this.ox, py = (cy - this.oy) / v.s - v.y + this.oy;
    this.place(v.s * factor, px, py, cx, cy);
  };
  TreeMap.prototype.panBy = function (dx, dy) {
    var v = this.view();
    this.pz.pan(v.x + dx / v.s, v.y + dy / v.s, { animate: false, force: true });
    this.hideTip();
  };
  TreeMap.prototype.fit = function () {  // the whole drawing, its top centred
    var s = Math.min(1, this.viewport.clientWidth / this.width, this.viewport.clientHeight / this.height);
    this.place(s, this.width / 2, 0, this.viewport.clientWidth / 2, 0);
  };
  // Show node i: centred at scale 1 when ``centre`` (the whole drawing when it fits), else only
  // brought into sight when it is out of it.
  TreeMap.prototype.show = function (i, centre) {
    var node = this.nodes[i];
    if (!node) { return; }
    if (centre) {
      if (this.width <= this.viewport.clientWidth && this.height <= this.viewport.clientHeight) { this.fit(); return; }
      this.centreOn(node.x, node.y, 1);
      return;
    }
    var at = this.toScreen(node.x, node.y), m = 40;
    if (at.x < m || at.y < m || at.x > this.viewport.clientWidth - m || at.y > this.viewport.clientHeight - m) {
      this.centreOn(node.x, node.y);
    }
  };

  // --- nodes: focus, preview, open, expand ------------------------------------------------------

  TreeMap.prototype.describe = function (el) {
    if (el.classList.contains("folded")) {
      return { head: el.getAttribute("data-f") + " runs in " + el.getAttribute("data-k") + " branch" + (el.getAttribute("data-k") === "1" ? "" : "es") + " folded here",
               text: "", hint: "Enter or a click draws them" };
    }
    var d = +el.getAttribute("data-d") + 1, status = el.getAttribute("class").match(/st-(\w+)/);
    var versions = el.getAttribute("data-v"), node = this.nodes[this.byId[el.getAttribute("data-run-id")]];
    var head = "Turn " + d + " · " + (status ? status[1] : "") + " · " + el.getAttribute("data-m");
    if (versions) { head += " · version " + versions.replace("/", " of "); }
    var notes = [];
    if (node && node.children.length > 1) { notes.push(node.children.length + " versions below"); }
    if (el.classList.contains("active")) { notes.push("shown in the chat"); }
    if (el.classList.contains("shared")) { notes.push("shared with the source session (read-only)"); }
    else { notes.push("Enter or a click opens this branch"); }
    return { head: head, text: el.getAttribute("data-t") || "(empty)", hint: notes.join(" · ") };
  };
  TreeMap.prototype.showTip = function (el) {
    var tip = this.tip, info;
    if (el.classList.contains("cl")) {
      info = { head: el.getAttribute("data-n") + " runs in a straight line", text: "", hint: "Click to draw them" };
    } else { info = this.describe(el); }
    tip.textContent = "";
    [["tip-head", info.head], ["tip-text", info.text ? "“" + info.text + "”" : ""], ["tip-hint", info.hint]].forEach(function (part) {
      if (!part[1]) { return; }
      var span = document.createElement("span"); span.className = part[0]; span.textContent = part[1]; tip.appendChild(span);
    });
    tip.hidden = false;
    var box = el.getBoundingClientRect(), outer = this.viewport.getBoundingClientRect();
    var left = box.right - outer.left + 10, top = box.top - outer.top - 4;
    if (left + tip.offsetWidth > this.viewport.clientWidth) { left = Math.max(4, box.left - outer.left - tip.offsetWidth - 10); }
    tip.style.left = left + "px";
    tip.style.top = Math.max(4, Math.min(top, this.viewport.clientHeight - tip.offsetHeight - 4)) + "px";
  };
  TreeMap.prototype.hideTip = function () { this.tip.hidden = true; };

  TreeMap.prototype.focusNode = function (i) {
    var node = this.nodes[i];
    if (!node) { return; }
    var old = this.nodes[this.focusIndex];
    if (old && old !== node) { old.el.removeAttribute("tabindex"); }
    this.focusIndex = i;
    var info = this.describe(node.el);
    node.el.setAttribute("tabindex", "-1");
    node.el.setAttribute("role", "button");
    node.el.setAttribute("aria-label", info.head + ". " + info.text + ". " + info.hint);
    this.show(i, false);
    node.el.focus({ preventScroll: true });
    this.showTip(node.el);
  };

  TreeMap.prototype.open = function (el) {
    if (el.classList.contains("folded")) { this.expand("unfold", el.getAttribute("data-u"), el.getAttribute("data-run-id")); return; }
    if (el.classList.contains("shared")) { return; }
    this.form.action = this.openUrl.replace(PLACEHOLDER, el.getAttribute("data-run-id"));
    this.form.submit();
  };

  // Fetch the map again with the stretch above run ``id`` drawn in full (``what`` "expand") or the
  // folded children of run ``id`` drawn ("unfold"); the node ``anchorId`` (default: ``id``) keeps
  // its place on the screen.
  TreeMap.prototype.expand = function (what, id, anchorId) {
    var self = this, v = this.view();
    anchorId = anchorId || id;
    var i = this.byId[anchorId];
    var anchor = i >= 0 ? this.toScreen(this.nodes[i].x, this.nodes[i].y, v) : null;
    if (this.wanted[what].indexOf(id) < 0) { this.wanted[what].push(id); }
    var parts = [];
    ["expand", "unfold"].forEach(function (name) {
      if (self.wanted[name].length) { parts.push(name + "=" + encodeURIComponent(self.wanted[name].join(","))); }
    });
    var query = "?" + parts.join("&");
    return fetch(this.mapUrl + query, { headers: { "HX-Request": "true" }, credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (html) {
      var old = self.viewport.querySelector(".treemap-canvas");
      var box = document.createElement("div");
      box.innerHTML = html;
      old.replaceWith(box.querySelector(".treemap-canvas"));
      self.setup();
      history.replaceState(null, "", location.pathname + query);
      var j = self.byId[anchorId];
      if (j === undefined && what === "unfold") { j = self.byId[id]; }
      if (j >= 0 && anchor) {
        self.place(v.s, self.nodes[j].x, self.nodes[j].y, anchor.x, anchor.y);
        self.focusNode(j);
      }
      self.section.dispatchEvent(new CustomEvent("treemap:expanded", { bubbles: true, detail: { what: what, id: id } }));
    }).catch(function (err) { self.say("The map could not be loaded again (" + err.message + ")."); });
  };

  TreeMap.prototype.say = function (text) { if (this.said) { this.said.textContent = text; } };

  // --- keys -------------------------------------------------------------------------------------

  TreeMap.prototype.moveFrom = function (i, key) {
    var node = this.nodes[i], row;
    if (key === "ArrowUp") { return node.parent; }
    if (key === "ArrowDown") {
      for (var k = 0; k < node.children.length; k++) {
        if (this.nodes[node.children[k]].el.classList.contains("on-path")) { return node.children[k]; }
      }
      return node.children.length ? node.children[0] : -1;
    }
    row = this.rows[node.level];
    if (key === "ArrowLeft") { return node.col > 0 ? row[node.col - 1] : -1; }
    if (key === "ArrowRight") { return node.col + 1 < row.length ? row[node.col + 1] : -1; }
    if (key === "Home") { return 0; }
    if (key === "End") { return this.shownIndex(); }
    return -1;
  };

  TreeMap.prototype.onKey = function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var key = event.key, onNode = event.target.matches && event.target.matches("circle.n");
    var handled = true;
    if (key === "+" || key === "=") { this.zoomBy(ZOOM_STEP); }
    else if (key === "-" || key === "_") { this.zoomBy(1 / ZOOM_STEP); }
    else if (key === "0") { this.fit(); }
    else if (key === ".") { var s = this.shownIndex(); if (s >= 0) { this.show(s, true); } }
    else if (onNode) { handled = this.onNodeKey(event, this.byId[event.target.getAttribute("data-run-id")]); }
    else if (key === "ArrowLeft") { this.panBy(PAN_STEP, 0); }
    else if (key === "ArrowRight") { this.panBy(-PAN_STEP, 0); }
    else if (key === "ArrowUp") { this.panBy(0, PAN_STEP); }
    else if (key === "ArrowDown") { this.panBy(0, -PAN_STEP); }
    else if (key === "Enter" || key === " ") {  // into the nodes: the shown run first, readable
      var start = Math.max(0, this.shownIndex());
      if (this.view().s < 0.5) { this.show(start, true); }
      this.focusNode(start);
    }
    else { handled = false; }
    if (handled) { event.preventDefault(); }
  };

  TreeMap.prototype.onNodeKey = function (event, i) {
    var key = event.key, node = this.nodes[i];
    if (key === "Enter" || key === " ") { this.open(node.el); return true; }
    if (key === "Escape") { node.el.removeAttribute("tabindex"); this.hideTip(); this.viewport.focus({ preventScroll: true }); return true; }
    if (key === "e") {
      if (node.el.classList.contains("folded")) { this.open(node.el); }
      else if (this.hidden[node.id]) { this.expand("expand", node.id); }
      else { this.say("Nothing is collapsed above this node."); }
      return true;
    }
    var next = this.moveFrom(i, key);
    if (next === -1 && /^(Arrow|Home|End)/.test(key)) { return true; }  // at an edge of the tree: stay
    if (next >= 0) { this.focusNode(next); return true; }
    return false;
  };

  // --- events -----------------------------------------------------------------------------------

  TreeMap.prototype.bindEvents = function () {
    var self = this, vp = this.viewport, down = null;
    vp.addEventListener("wheel", function (e) { self.pz.zoomWithWheel(e); self.hideTip(); }, { passive: false });
    vp.addEventListener("keydown", function (e) { self.onKey(e); });
    vp.addEventListener("pointerdown", function (e) { down = { x: e.clientX, y: e.clientY }; self.hideTip(); });
    vp.addEventListener("click", function (e) {
      var moved = down && Math.hypot(e.clientX - down.x, e.clientY - down.y) > CLICK_SLOP;
      down = null;
      if (moved) { return; }
      var el = e.target.closest && e.target.closest("circle.n, text.cl");
      if (!el) { return; }
      if (el.classList.contains("cl")) { self.expand("expand", el.getAttribute("data-run-id")); } else { self.open(el); }
    });
    vp.addEventListener("pointerover", function (e) {
      var el = e.target.closest && e.target.closest("circle.n, text.cl");
      if (el && e.pointerType !== "touch" && !(e.buttons & 1)) { self.showTip(el); }
    });
    vp.addEventListener("pointerout", function (e) {
      var el = e.target.closest && e.target.closest("circle.n, text.cl");
      if (el && document.activeElement !== el) { self.hideTip(); }
    });
    this.section.querySelector(".treemap-tools").addEventListener("click", function (e) {
      var act = e.target.closest("button") && e.target.closest("button").getAttribute("data-act");
      if (act === "in") { self.zoomBy(ZOOM_STEP); }
      else if (act === "out") { self.zoomBy(1 / ZOOM_STEP); }
      else if (act === "fit") { self.fit(); }
      else if (act === "shown") { var s = self.shownIndex(); if (s >= 0) { self.show(s, true); } }
    });
  };

  function start() {
    if (!window.Panzoom) { return; }  // the picture and the list still work
    document.querySelectorAll("section.treemap").forEach(function (section) {
      section.treemap = new TreeMap(section);
      // For `python -m bench ui`: when the map's first frame has been painted.
      performance.mark("treemap-ready");
      requestAnimationFrame(function () { setTimeout(function () { performance.mark("treemap-painted"); }, 0); });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
