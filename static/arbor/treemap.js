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
  var FIT_MAX = 2.5;        // the whole tree is fitted to the box, but a small one is not blown up past this
  var FIT_PAD = 16;         // px kept free around the fitted tree
  var READABLE = 0.45;      // a fitted scale below this shows the shown run at scale 1 on load instead
  var LABEL_SCALE = 0.55;   // node labels (turn number, branch label) are drawn from this scale up
  var LABEL_MAX = 400;      // at most this many node labels at once (the nearest the active path first)
  var LABEL_WAIT = 90;      // ms after the last zoom or pan before the labels are placed again
  var SVGNS = "http://www.w3.org/2000/svg";

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
    var legend = document.querySelector("details.legend-box");  // folded away on phones
    if (legend && window.matchMedia("(max-width: 760px)").matches) { legend.open = false; }
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
    this.layer = document.createElementNS(SVGNS, "g");  // node labels, in screen coordinates (not zoomed)
    this.layer.setAttribute("class", "node-labels");
    this.layer.setAttribute("aria-hidden", "true");
    this.svg.appendChild(this.layer);
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
    this.moved();
  };
  // The drawing's point under the viewport's point (sx, sy).
  TreeMap.prototype.pointAt = function (sx, sy, v) {
    v = v || this.view();
    return { x: (sx - this.ox) / v.s - v.x + this.ox, y: (sy - this.oy) / v.s - v.y + this.oy };
  };
  // Zoom by ``factor`` keeping the drawing's point under the viewport's point (sx, sy) where it is.
  TreeMap.prototype.zoomAt = function (factor, sx, sy) {
    var v = this.view(), p = this.pointAt(sx, sy, v);
    this.place(v.s * factor, p.x, p.y, sx, sy);
  };
  TreeMap.prototype.centreOn = function (px, py, s) {
    this.place(s || this.view().s, px, py, this.viewport.clientWidth / 2, this.viewport.clientHeight / 2);
  };
  TreeMap.prototype.zoomBy = function (factor) {  // around the viewport's centre
    this.zoomAt(factor, this.viewport.clientWidth / 2, this.viewport.clientHeight / 2);
  };
  TreeMap.prototype.panBy = function (dx, dy) {
    var v = this.view();
    this.pz.pan(v.x + dx / v.s, v.y + dy / v.s, { animate: false, force: true });
    this.hideTip();
    this.moved();
  };
  // The scale at which the whole drawing fits the box (with FIT_PAD around it; at most FIT_MAX).
  TreeMap.prototype.fitScale = function () {
    var w = this.viewport.clientWidth - 2 * FIT_PAD, h = this.viewport.clientHeight - 2 * FIT_PAD;
    return Math.min(FIT_MAX, w / this.width, h / this.height);
  };
  TreeMap.prototype.fit = function () {  // the whole drawing, centred in the box
    this.place(this.fitScale(), this.width / 2, this.height / 2, this.viewport.clientWidth / 2, this.viewport.clientHeight / 2);
  };
  // Show node i: centred at scale 1 when ``centre`` (the whole drawing when it fits), else only
  // brought into sight when it is out of it.
  TreeMap.prototype.show = function (i, centre) {
    var node = this.nodes[i];
    if (!node) { return; }
    if (centre) {
      if (this.fitScale() >= READABLE) { this.fit(); return; }  // the whole tree, readable
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

  // --- node labels: "#<turn>" and the branch label, placed where they collide with nothing ------
  // Drawn in screen coordinates once a zoom or pan has settled (LABEL_WAIT): a frame of the zoom
  // itself only transforms the drawing. Greedy placement (as map labelling does, e.g. Christensen,
  // Marks & Shieber 1995, "An empirical study of algorithms for point-feature label placement"):
  // nodes in priority order (the shown run, labelled branches, the active path, the rest), each
  // label at the first of four spots beside its node that overlaps no node and no label already
  // placed; a label with no free spot is left out. Overlaps are found through a grid of buckets.

  TreeMap.prototype.moved = function () {
    var self = this;
    if (this.layer && this.layer.firstChild) { this.layer.textContent = ""; }
    clearTimeout(this.labelTimer);
    this.labelTimer = setTimeout(function () { self.placeLabels(); }, LABEL_WAIT);
  };

  TreeMap.prototype.labelOf = function (node) {
    var el = node.el;
    if (el.classList.contains("folded")) { return ""; }
    var text = "#" + (+el.getAttribute("data-d") + 1);
    var branch = el.getAttribute("data-b");
    if (branch) { text += " " + (branch.length > 18 ? branch.slice(0, 17) + "…" : branch); }
    if (el.classList.contains("active")) { text += " · shown"; }
    return text;
  };

  TreeMap.prototype.placeLabels = function () {
    var layer = this.layer;
    if (!layer) { return; }
    layer.textContent = "";
    var v = this.view(), W = this.viewport.clientWidth, H = this.viewport.clientHeight;
    var shown = this.shownIndex();
    if (v.s < LABEL_SCALE && shown < 0) { return; }
    var r = 6 * v.s + 2, CELL = 64, grid = Object.create(null);
    function key(cx, cy) { return cx + ":" + cy; }
    function add(b) {
      for (var cx = Math.floor(b.x0 / CELL); cx <= Math.floor(b.x1 / CELL); cx++) {
        for (var cy = Math.floor(b.y0 / CELL); cy <= Math.floor(b.y1 / CELL); cy++) { (grid[key(cx, cy)] = grid[key(cx, cy)] || []).push(b); }
      }
    }
    function free(b) {
      if (b.x0 < 0 || b.y0 < 0 || b.x1 > W || b.y1 > H) { return false; }
      for (var cx = Math.floor(b.x0 / CELL); cx <= Math.floor(b.x1 / CELL); cx++) {
        for (var cy = Math.floor(b.y0 / CELL); cy <= Math.floor(b.y1 / CELL); cy++) {
          var list = grid[key(cx, cy)];
          if (!list) { continue; }
          for (var k = 0; k < list.length; k++) {
            var o = list[k];
            if (b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1) { return false; }
          }
        }
      }
      return true;
    }
    var seen = [], self = this;
    for (var i = 0; i < this.nodes.length; i++) {
      var at = this.toScreen(this.nodes[i].x, this.nodes[i].y, v);
      if (at.x < -r || at.y < -r || at.x > W + r || at.y > H + r) { continue; }
      var rr = i === shown ? 12.5 * v.s + 1 : r;  // the node itself (the shown run: its ring)
      add({ x0: at.x - rr, y0: at.y - rr, x1: at.x + rr, y1: at.y + rr });
      seen.push({ i: i, x: at.x, y: at.y });
    }
    this.svg.querySelectorAll("text.cl").forEach(function (t) {  // the "+N" of collapsed stretches
      var x = +t.getAttribute("x"), y = +t.getAttribute("y"), p = self.toScreen(x, y, v);
      var w = t.textContent.length * 6 * v.s;
      add({ x0: p.x, y0: p.y - 10 * v.s, x1: p.x + w, y1: p.y + 2 * v.s });
    });
    function rank(s) {
      var el = self.nodes[s.i].el;
      return el.classList.contains("active") ? 0 : el.hasAttribute("data-b") ? 1 : el.classList.contains("on-path") ? 2 : 3;
    }
    if (v.s < LABEL_SCALE) { seen = seen.filter(function (s) { return s.i === shown; }); }
    seen.sort(function (a, b) { return rank(a) - rank(b) || a.i - b.i; });
    var frag = document.createDocumentFragment(), placed = 0;
    for (var n = 0; n < seen.length && placed < LABEL_MAX; n++) {
      var s = seen[n], node = this.nodes[s.i], text = this.labelOf(node);
      if (!text) { continue; }
      var gap = (s.i === shown ? 12.5 * v.s + 1 : r) + 3;
      var w = text.length * 6.3 + 4, h = 13;
      var spots = [[s.x + gap, s.y - h / 2, "start"], [s.x - gap - w, s.y - h / 2, "end"],
                   [s.x - w / 2, s.y - gap - h, "middle"], [s.x - w / 2, s.y + gap, "middle"]];
      for (var k = 0; k < spots.length; k++) {
        var b = { x0: spots[k][0], y0: spots[k][1], x1: spots[k][0] + w, y1: spots[k][1] + h };
        if (!free(b)) { continue; }
        add(b);
        var t = document.createElementNS(SVGNS, "text");
        t.setAttribute("class", "nl" + (node.el.classList.contains("active") ? " nl-shown" : "") + (node.el.hasAttribute("data-b") ? " named" : ""));
        t.setAttribute("x", (b.x0 + 2).toFixed(1));
        t.setAttribute("y", (b.y0 + 10).toFixed(1));
        t.setAttribute("data-run-id", node.id);
        t.textContent = text;
        frag.appendChild(t);
        placed++;
        break;
      }
    }
    layer.appendChild(frag);
  };

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
    vp.addEventListener("wheel", function (e) {  // zoom about the pointer: the point under it stays put
      e.preventDefault();
      var box = vp.getBoundingClientRect();
      var delta = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      self.zoomAt(Math.exp(-Math.max(-300, Math.min(300, delta)) * 0.0025), e.clientX - box.left, e.clientY - box.top);
    }, { passive: false });
    vp.addEventListener("panzoomchange", function () { self.moved(); }, true);  // drags and pinches (Panzoom's own)
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
