// Arbor: progressive enhancements. Every page works without this file (links and forms are real;
// the drawer and the menu open through :target); with it:
// - the chat opens at its newest turn (the composer is not focused, so j/k/n/p work); Enter sends,
//   Shift+Enter adds a line, Escape leaves the composer, Shift+Escape comes back to it; Ctrl+Shift+O
//   starts a new session, Ctrl+Shift+C copies the last answer (as ChatGPT);
// - the thread reserves the sticky composer's height (--composer-h) so no turn ends under it, and a
//   "Jump to latest" button shows when the newest turn is out of sight;
// - a turn's menu opens upwards when there is no room below it, and its forms stay in view;
// - on phones the session header folds into one line with a details toggle;
// - older turns load when scrolled to, 30 at a time, and the turn being read stays where it was;
// - after every htmx action focus goes where the server says and an aria-live region says what
//   changed (the "arbor:after" event: {focus, say, renamed, done}; see conversations/views.py);
// - streaming state: the badge follows SSE "status" events (queued → running) and the first token
//   ("writing…"); Send turns into Stop while a reply streams and back when it is done;
// - copy buttons on messages and code blocks, edit in place, rename in place;
// - the sessions sidebar (collapsible; a drawer on narrow screens), the site menu, the theme switch;
// - readable errors for refused htmx requests.
(function () {
  "use strict";

  var root = document.documentElement;
  root.classList.add("js");
  var narrow = window.matchMedia("(max-width: 900px)");

  function $(selector, scope) { return (scope || document).querySelector(selector); }
  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 160;
  }
  function toBottom() { window.scrollTo(0, document.documentElement.scrollHeight); }

  // --- announcements and focus ---------------------------------------------------------------
  // Each message is a line of its own in the live region (aria-atomic="false": only additions are
  // read), so one that follows quickly ("Sent", then "The reply is complete") does not cut the
  // first off, and a repeated message is read again. Lines leave after a while.
  function announce(text) {
    var box = document.getElementById("announcer");
    if (!box || !text) { return; }
    setTimeout(function () {
      var line = document.createElement("p");
      line.textContent = text;
      box.appendChild(line);
      setTimeout(function () { line.remove(); }, 8000);
    }, 60);
  }
  function focusElement(el, scroll) {
    if (!el) { return false; }
    if (!el.matches("a[href], button, input, select, textarea, summary, [tabindex]")) { el.setAttribute("tabindex", "-1"); }
    el.focus({ preventScroll: true });
    if (scroll === "bottom") { toBottom(); } else if (scroll !== false) { el.scrollIntoView({ block: scroll || "nearest" }); }
    return document.activeElement === el;
  }
  function composer() { return document.getElementById("id_input"); }

  // --- Enter sends; nothing is sent while a reply streams (Stop is the button then) -------------
  function lastAnswer() {
    var answers = document.querySelectorAll("#thread article.turn .msg.assistant .content.md");
    return answers.length ? answers[answers.length - 1] : null;
  }
  function shortcut(event) {  // true when the key was one of the page-wide shortcuts
    var t = event.target;
    if (event.key === "Escape" && event.shiftKey) {
      if (!composer()) { return false; }
      event.preventDefault();
      focusElement(composer(), false);
      return true;
    }
    if (event.key === "Escape" && t === composer()) {  // leave the composer for the turn keys (j/k/n/p)
      event.preventDefault();
      var turns = document.querySelectorAll("#thread article.turn");
      var last = turns.length ? turns[turns.length - 1] : null;
      if (!focusElement(last, false)) { t.blur(); }
      announce("Left the message box: j and k move between turns, Shift+Escape comes back.");
      return true;
    }
    if (!(event.ctrlKey || event.metaKey) || !event.shiftKey || event.altKey) { return false; }
    var key = (event.key || "").toLowerCase();
    if (key === "o") {
      var form = $(".new-session-side");
      if (!form) { return false; }
      event.preventDefault();
      form.requestSubmit();
      return true;
    }
    if (key === "c" && $("#thread")) {
      event.preventDefault();
      var answer = lastAnswer();
      if (!answer) { announce("There is no answer to copy yet."); return true; }
      var button = answer.closest("article.turn").querySelector("button.copy[data-copy^='#answer-']");
      copyText(answer.innerText, button || document.createElement("button"));
      return true;
    }
    return false;
  }
  document.addEventListener("keydown", function (event) {
    var t = event.target;
    if (shortcut(event)) { return; }
    if (event.key === "Escape") { closeOverlays(t); return; }
    if (!(t && t.matches && t.matches(".composer textarea, details.edit textarea"))) { return; }
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) { return; }
    event.preventDefault();
    var form = t.closest("form");
    if (!form || !t.value.trim()) { return; }
    if (form.querySelector("button.stop")) { announce("A reply is still being written: wait for it, or stop it first."); return; }
    form.requestSubmit();
  });

  // --- older turns: load when scrolled to, keep the reader's place ----------------------------
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        if (window.htmx) { window.htmx.trigger(entry.target, "older-visible"); }
      }
    });
  }, { rootMargin: "200px 0px 0px 0px" }) : null;
  function watchOlder(scope) {
    if (!observer) { return; }
    (scope || document).querySelectorAll(".load-older").forEach(function (el) { observer.observe(el); });
  }
  var anchor = null;  // the first turn below the loader and its distance from the top of the viewport
  var refocus = null;  // the id of a swapped-out element that had focus (a finished turn replaces its streaming one)
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    anchor = null;
    refocus = null;
    if (target && target.classList && target.classList.contains("older")) {
      var first = target.nextElementSibling;
      if (first) { anchor = { el: first, top: first.getBoundingClientRect().top }; }
    }
    if (target && target.id && target.id !== "main" && target.contains(document.activeElement)) { refocus = target.id; }
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (anchor && anchor.el.isConnected) {
      var moved = anchor.el.getBoundingClientRect().top - anchor.top;
      if (moved) { window.scrollBy(0, moved); }
    }
    anchor = null;
    if (refocus && document.activeElement === document.body) { focusElement(document.getElementById(refocus), false); }
    refocus = null;
  });

  // --- copy buttons (messages, answers, code blocks) -------------------------------------------
  function copied(button) {
    var use = button.querySelector("use");
    var label = button.getAttribute("aria-label");
    if (use) {
      var href = use.getAttribute("href");
      use.setAttribute("href", href.replace(/#copy$/, "#check"));
      button.classList.add("done");
      setTimeout(function () { use.setAttribute("href", href); button.classList.remove("done"); }, 1500);
    } else {
      var old = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = old; }, 1500);
    }
    announce("Copied" + (label ? ": " + label.replace(/^Copy /, "the ") : "") + ".");
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.className = "offscreen";
    document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing else to try */ }
    document.body.removeChild(area);
  }
  function copyText(text, button) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { copied(button); }, function () { fallbackCopy(text); copied(button); });
    } else { fallbackCopy(text); copied(button); }
  }
  document.addEventListener("click", function (event) {
    var b = event.target.closest && event.target.closest("button.copy[data-copy], button.copy-code");
    if (!b) { return; }
    if (b.classList.contains("copy-code")) {
      var code = b.parentNode.querySelector("code") || b.parentNode;
      copyText(code.innerText, b);
    } else {
      var source = document.querySelector(b.getAttribute("data-copy"));
      if (source) { copyText(source.matches("input, textarea") ? source.value : source.innerText, b); }
    }
  });

  // --- edit in place (the <details class="edit"> fallback is hidden with JavaScript) -----------
  function editToggle(button, open) {
    var details = document.getElementById(button.getAttribute("aria-controls"));
    if (!details) { return; }
    details.open = open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      var area = details.querySelector("textarea");
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    } else {
      button.focus();
    }
  }
  document.addEventListener("click", function (event) {
    var open = event.target.closest && event.target.closest("button.edit-open");
    if (open) { editToggle(open, open.getAttribute("aria-expanded") !== "true"); return; }
    var cancel = event.target.closest && event.target.closest("button.edit-cancel");
    if (cancel) {
      var details = cancel.closest("details.edit");
      var opener = details && document.querySelector('button.edit-open[aria-controls="' + details.id + '"]');
      if (opener) { editToggle(opener, false); } else if (details) { details.open = false; }
    }
  });

  // --- rename in place: focus the title box when a rename opens -----------------------------
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!(details.matches && details.matches("details.rename")) || !details.open) { return; }
    var input = details.querySelector("input[name=title]");
    if (input) { input.focus(); input.select(); }
  }, true);

  // --- Escape closes what is open: the drawer, the menu, a rename, an edit ----------------------
  function closeOverlays(target) {
    var details = target && target.closest && target.closest("details.rename[open], details.menu[open]");
    if (details) { details.open = false; var s = details.querySelector("summary"); if (s) { s.focus(); } return; }
    var edit = target && target.closest && target.closest("details.edit[open]");
    if (edit) {
      var opener = document.querySelector('button.edit-open[aria-controls="' + edit.id + '"]');
      if (opener) { editToggle(opener, false); } else { edit.open = false; }
      return;
    }
    var nav = document.getElementById("site-nav");
    if (nav && nav.classList.contains("open")) { setMenu(false, true); return; }
    var panel = document.getElementById("sessions");
    if (panel && panel.classList.contains("open")) { setDrawer(false, true); }
  }

  // --- the sessions sidebar: collapsible on wide screens, a drawer on narrow ones --------------
  var backdrop = null;
  function drawerToggle() { return $(".drawer-toggle"); }
  function setDrawer(open, restoreFocus) {
    var panel = document.getElementById("sessions");
    var toggle = drawerToggle();
    if (!panel) { return; }
    panel.classList.toggle("open", open);
    if (!backdrop) {
      backdrop = document.createElement("div");
      backdrop.className = "drawer-backdrop";
      backdrop.addEventListener("click", function () { setDrawer(false, true); });
      document.body.appendChild(backdrop);
    }
    backdrop.classList.toggle("open", open);
    if (!narrow.matches) { return; }  // wide screens: aria-expanded tells whether the sidebar is collapsed
    if (toggle) { toggle.setAttribute("aria-expanded", open ? "true" : "false"); }
    if (open) {
      var first = panel.querySelector("#side-q") || panel.querySelector("a, button");
      if (first) { setTimeout(function () { first.focus(); }, 30); }
    } else if (restoreFocus && toggle) {
      toggle.focus();
    }
  }
  function setCollapsed(collapsed) {
    var shell = $(".shell.with-sidebar");
    var toggle = drawerToggle();
    if (!shell) { return; }
    shell.classList.toggle("collapsed", collapsed);
    if (toggle) { toggle.setAttribute("aria-expanded", collapsed ? "false" : "true"); }
    try { localStorage.setItem("arbor.sidebar", collapsed ? "collapsed" : "open"); } catch (e) { /* private mode */ }
  }
  function initSidebar() {
    var toggle = drawerToggle();
    if (!toggle) { return; }
    toggle.setAttribute("role", "button");
    var collapsed = false;
    try { collapsed = localStorage.getItem("arbor.sidebar") === "collapsed"; } catch (e) { /* private mode */ }
    if (narrow.matches) {
      toggle.setAttribute("aria-expanded", "false");
    } else {
      setCollapsed(collapsed);
    }
    var close = $(".drawer-close");
    if (close) { close.setAttribute("role", "button"); }
  }
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest(".drawer-toggle");
    if (toggle) {
      event.preventDefault();
      if (narrow.matches) {
        setDrawer(!document.getElementById("sessions").classList.contains("open"), true);
      } else {
        setCollapsed(!$(".shell.with-sidebar").classList.contains("collapsed"));
      }
      return;
    }
    if (event.target.closest && event.target.closest(".drawer-close")) { event.preventDefault(); setDrawer(false, true); }
  });
  narrow.addEventListener("change", function () {
    setDrawer(false, false);
    initSidebar();
  });

  // --- the site menu (narrow screens) ---------------------------------------------------------
  function setMenu(open, restoreFocus) {
    var nav = document.getElementById("site-nav");
    var toggle = $(".menu-toggle");
    if (!nav || !toggle) { return; }
    nav.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) { var first = nav.querySelector("a, button"); if (first) { first.focus(); } } else if (restoreFocus) { toggle.focus(); }
  }
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest(".menu-toggle");
    var nav = document.getElementById("site-nav");
    if (toggle) {
      event.preventDefault();
      setMenu(!nav.classList.contains("open"), true);
    } else if (nav && nav.classList.contains("open") && !(event.target.closest && event.target.closest("#site-nav"))) {
      setMenu(false, false);
    }
  });

  // --- the theme switch: applied at once, remembered per user on the server ------------------
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("theme-form")) { return; }
    event.preventDefault();
    var button = event.submitter;
    if (!button || !button.value) { return; }
    var theme = button.value;
    if (theme === "system") { root.removeAttribute("data-theme"); } else { root.setAttribute("data-theme", theme); }
    form.querySelectorAll("button[name=theme]").forEach(function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
    var body = new FormData(form);
    body.set("theme", theme);
    fetch(form.action, { method: "POST", body: body, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        announce(button.getAttribute("aria-label") + " on.");
      })
      .catch(function () { notice("The theme could not be saved; it applies to this page only."); });
  });

  // --- after an htmx action: focus, announcement, titles, the composer's Send/Stop -------------
  var lastSib = null;  // "prev" or "next": the sibling arrow that was used
  var USER_EVENTS = /^(click|submit|keydown|keyup|change|search)$/;
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    if (event.detail.xhr) { event.detail.xhr.arborByUser = !!(trigger && USER_EVENTS.test(trigger.type)); }
    lastSib = elt && elt.classList && elt.classList.contains("sib") ? (elt.classList.contains("prev") ? "prev" : "next") : null;
  });
  function syncComposer() {
    var form = $("form.composer");
    if (!form || $("#thread .streaming")) { return; }
    var stop = form.querySelector("button.stop");
    var send = form.querySelector("button.send");
    var hadFocus = stop && document.activeElement === stop;
    if (stop) { stop.remove(); }
    if (send) { send.hidden = false; }
    form.removeAttribute("data-streaming");
    if (hadFocus || document.activeElement === document.body) { focusElement(composer(), false); }
  }
  document.addEventListener("arbor:after", function (event) {
    var d = event.detail || {};
    if (d.renamed) {
      document.querySelectorAll('[data-title-of="' + d.renamed.id + '"]').forEach(function (el) { el.textContent = d.renamed.title || "Untitled session"; });
      document.querySelectorAll(".title-rename[open]").forEach(function (el) { el.open = false; });
    }
    if (d.done) { syncComposer(); }
    var target = d.focus ? document.querySelector(d.focus) : null;
    if (target && lastSib && target.classList.contains("turn")) {
      target = target.querySelector(".sib." + lastSib + ":not(:disabled)") || target.querySelector(".sib:not(:disabled)") || target;
      target.closest(".turn").scrollIntoView({ block: "nearest" });
      focusElement(target, false);
    } else if (target) {
      focusElement(target, target === composer() ? "bottom" : "start");
    }
    lastSib = null;
    if (d.say) { announce(d.say); }
  });
  // The element that made the request may have been swapped away: focus never drops to <body>.
  // After a user's action, it goes into what came instead (a lazily loaded subtree, say); after a
  // swap nobody asked for (a finished reply) it goes back to the composer if there is one.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (target && target.id === "main") { initPage(true); return; }
    if (document.activeElement !== document.body) { return; }
    var fresh = event.target;
    if (event.detail.xhr && event.detail.xhr.arborByUser && fresh && fresh !== document.body && fresh.isConnected) {
      focusElement(fresh.querySelector("a[href], button:not([disabled]), input, select, textarea, summary") || fresh, false);
    } else if (composer() && event.detail.elt && !event.detail.elt.isConnected) {
      focusElement(composer(), false);
    }
  });

  // --- the composer names the model that will answer the chosen agent ------------------------
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!(select.matches && select.matches(".composer select[name=agent_id]"))) { return; }
    var option = select.options[select.selectedIndex];
    var label = select.form && select.form.querySelector("#composer-model .model-name");
    if (label && option && option.dataset.model) { label.textContent = option.dataset.model; }
  });

  // --- streaming: the badge follows "status" events and the first token (first_token_at is only
  // written when a run ends, so the page cannot know it while text streams: the first delta decides)
  var BADGE = { queued: "waiting for a worker", running: "thinking…", writing: "writing…" };
  function setBadge(streaming, status, text) {
    var badge = streaming && streaming.querySelector(".status-badge");
    if (!badge) { return; }
    badge.textContent = text || BADGE[status] || status;
    badge.setAttribute("data-status", status);
  }
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var msg = event.detail;
    // a turn's answer, or one column of a fan-out: the first delta (also replayed after a reload) ends "thinking…"
    var streaming = event.target.closest && event.target.closest(".streaming, .fan-stream");
    if (msg && msg.type === "status") {
      event.preventDefault();
      try {
        var data = JSON.parse(msg.data);
        if (data.status) { setBadge(streaming, data.status === "running" && streaming && streaming.dataset.writing ? "writing" : data.status, data.retrying ? "retrying: " + data.retrying : ""); }
      } catch (e) { /* not JSON: ignore */ }
      return;
    }
    if (msg && msg.type === "delta") {
      event.target.dataset.follow = nearBottom() ? "1" : "";
      if (streaming && !streaming.dataset.writing) {
        streaming.dataset.writing = "1";
        setBadge(streaming, "writing");
      }
    }
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.target && event.target.dataset && event.target.dataset.follow === "1") { toBottom(); }
  });

  // A run's stream ends with a "done" event, then the server closes it. EventSource reports any
  // close as an error (htmx logs it to the console and reconnects), so every stream is closed on
  // "done" here: pages whose markup has no sse-close (a comparison's cells) end as quietly.
  document.addEventListener("htmx:sseOpen", function (event) {
    var source = event.detail && event.detail.source;
    if (!source || source.arborClosesOnDone) { return; }
    source.arborClosesOnDone = true;
    source.addEventListener("done", function () { source.close(); });
  });

  // --- refused htmx requests (400/404/409/429): say why instead of doing nothing -------------
  function notice(text) {
    var box = document.getElementById("notice");
    if (!box) { return; }
    box.textContent = text; box.hidden = false;
    clearTimeout(box._timer);
    box._timer = setTimeout(function () { box.hidden = true; }, 8000);
  }
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = (xhr && xhr.responseText && xhr.getResponseHeader("Content-Type") || "").indexOf("text/plain") === 0 ? xhr.responseText : "";
    notice(text || ("The server refused this (" + (xhr ? xhr.status : "?") + ")."));
  });
  document.addEventListener("htmx:sendError", function () { notice("The server could not be reached. Try again."); });

  // --- enhancing new content -----------------------------------------------------------------
  function enhance(scope) {
    scope = scope || document;
    if (!scope.querySelectorAll) { return; }
    scope.querySelectorAll("button.copy[data-copy], button.edit-open, button.edit-cancel").forEach(function (b) { b.hidden = false; });
    scope.querySelectorAll(".md pre").forEach(function (pre) {
      if (!pre.querySelector(".copy-code")) {
        var b = document.createElement("button");
        b.type = "button"; b.className = "copy-code"; b.textContent = "Copy";
        b.setAttribute("aria-label", "Copy code");
        pre.appendChild(b);
      }
    });
    // A region that scrolls sideways must be reachable by keyboard (WCAG 2.1.1).
    scope.querySelectorAll(".md pre, .md table, .audit-run pre, .table-wrap").forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1 && !el.hasAttribute("tabindex")) { el.setAttribute("tabindex", "0"); }
    });
    watchOlder(scope);
  }
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });

  // --- page start (and a session opened from the sidebar, which swaps <main>) -----------------
  function markCurrentSession() {
    var match = location.pathname.match(/^\/s\/([0-9a-f-]+)\//);
    var id = match ? match[1] : null;
    document.querySelectorAll(".side-list .srow").forEach(function (row) {
      var link = row.querySelector(".stitle");
      var current = !!(id && link && link.getAttribute("data-title-of") === id);
      row.classList.toggle("current", current);
      if (link) { if (current) { link.setAttribute("aria-current", "page"); } else { link.removeAttribute("aria-current"); } }
    });
    document.querySelectorAll(".sessions-panel input[name=current]").forEach(function (input) { input.value = id || ""; });
  }
  function afterLoad(fn) {
    if (document.readyState === "complete") { setTimeout(fn, 0); } else { window.addEventListener("load", function () { setTimeout(fn, 0); }); }
  }
  function initPage(swapped) {
    var thread = document.getElementById("thread");
    var hashTarget = location.hash.length > 1 ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    if (swapped) { markCurrentSession(); setDrawer(false, false); hashTarget = null; }
    enhance(document.getElementById("main") || document);
    if (hashTarget && hashTarget.matches(".turn, .compare-turn")) {
      // After the load event: Chromium clears focus when it scrolls to a fragment that is not focusable.
      afterLoad(function () {
        var voted = hashTarget.querySelector(".voted");
        focusElement(voted || hashTarget, "start");
        announce(voted ? voted.textContent.replace(/\s+/g, " ").trim() : hashTarget.getAttribute("aria-label") || "");
      });
    } else if (thread) {
      toBottom();
      // The composer is not focused on load: the turn keys (j/k/n/p) work at once, and a phone's
      // keyboard does not cover the chat. Shift+Escape (or a tap) goes to it.
      if (swapped && (document.activeElement === document.body || !document.activeElement.offsetParent)) {
        focusElement(document.getElementById("main"), false);
      }
      if (swapped) { announce("Opened “" + ((document.getElementById("session-title") || {}).textContent || "the session") + "”."); }
    } else if (hashTarget) {
      afterLoad(function () { focusElement(hashTarget, false); });
    }
  }
  // --- the sticky composer: its height is reserved, and "Jump to latest" when out of sight -------
  // --composer-h (px) on <html> is the composer's height plus its gap; app.css uses it as the
  // page's scroll-padding-bottom, so scrollIntoView() and focus never leave a turn under it.
  var composerSize = "ResizeObserver" in window ? new ResizeObserver(function () { measureComposer(); }) : null;
  var measured = null;
  function measureComposer() {
    var form = $("form.composer");
    if (!form) { root.style.removeProperty("--composer-h"); return; }
    var gap = parseFloat(getComputedStyle(form).bottom) || 0;
    root.style.setProperty("--composer-h", Math.ceil(form.offsetHeight + gap) + "px");
    updateJump();
  }
  function watchComposer() {
    var form = $("form.composer");
    if (!composerSize || form === measured) { return; }
    if (measured) { composerSize.unobserve(measured); }
    measured = form;
    if (form) { composerSize.observe(form); }
    measureComposer();
  }
  // The newest turn's bottom edge against the composer's top edge: hidden (below) by how many px.
  function hiddenBelow() {
    var form = $("form.composer");
    var turns = document.querySelectorAll("#thread article.turn");
    if (!form || !turns.length) { return 0; }
    return turns[turns.length - 1].getBoundingClientRect().bottom - form.getBoundingClientRect().top;
  }
  var jumpQueued = false;
  function updateJump() {
    if (jumpQueued) { return; }
    jumpQueued = true;
    requestAnimationFrame(function () {
      jumpQueued = false;
      var jump = $("form.composer .jump-latest");
      if (jump) { jump.hidden = hiddenBelow() <= 24; }
    });
  }
  window.addEventListener("scroll", updateJump, { passive: true });
  window.addEventListener("resize", updateJump);
  document.addEventListener("click", function (event) {
    var jump = event.target.closest && event.target.closest(".jump-latest");
    if (!jump) { return; }
    event.preventDefault();
    toBottom();
    jump.hidden = true;
    announce("At the latest turn.");
  });
  // A finished (or stopped) turn replaces its streaming one and is taller: a reader who was
  // following the end of the chat keeps seeing it whole, above the composer.
  var following = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    following = !!(target && target.closest && target.closest("#thread")) && hiddenBelow() <= 24;
  });
  document.addEventListener("htmx:afterSettle", function () {
    watchComposer();
    if (following && hiddenBelow() > 0 && !(document.activeElement && document.activeElement.closest && document.activeElement.closest(".more-tools"))) { toBottom(); }
    following = false;
    updateJump();
  });
  document.addEventListener("htmx:sseMessage", updateJump);

  // --- a turn's menu: upwards when there is no room below it; its open form stays in view -------
  function roomBelow(el) {
    var form = $("form.composer");
    var limit = form ? form.getBoundingClientRect().top : window.innerHeight;
    return limit - el.getBoundingClientRect().bottom;
  }
  function placeMenu(menu) {
    var body = menu.querySelector(".more-body");
    var summary = menu.querySelector("summary");
    if (!body || !summary) { return; }
    menu.classList.remove("up");
    body.style.maxHeight = "";
    var below = roomBelow(summary.closest(".toolbar") || summary) - 8;
    var bar = $(".topbar");
    var above = summary.getBoundingClientRect().top - (bar ? bar.getBoundingClientRect().bottom : 0) - 8;
    var needed = body.scrollHeight;
    var up = needed > below && above > below;
    menu.classList.toggle("up", up);
    var room = Math.max(up ? above : below, 120);
    if (needed > room) { body.style.maxHeight = Math.floor(room) + "px"; }
  }
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!details.matches) { return; }
    var menu = details.matches("details.more-tools") ? details : details.closest("details.more-tools");
    if (!menu || !menu.open) { return; }
    placeMenu(menu);
    if (details !== menu && details.open) {
      var form = details.querySelector("form") || details;
      form.scrollIntoView({ block: "nearest" });
      var field = form.querySelector("input:not([type=hidden]), select, button");
      if (field) { field.focus({ preventScroll: true }); }
    }
  }, true);

  // --- the session header on phones: one line, the rest behind "Details" ------------------------
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest(".details-toggle");
    if (!toggle) { return; }
    var page = toggle.closest(".chat-page");
    var open = !page.classList.contains("details-open");
    var atEnd = hiddenBelow() <= 24;
    page.classList.toggle("details-open", open);
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    measureComposer();
    if (atEnd) { toBottom(); }  // the newest turn stays in sight above the composer
  });

  document.addEventListener("DOMContentLoaded", function () {
    watchComposer();
    document.querySelectorAll(".menu-toggle").forEach(function (t) { t.setAttribute("role", "button"); t.setAttribute("aria-expanded", "false"); });
    initSidebar();
    initPage(false);
  });
})();
