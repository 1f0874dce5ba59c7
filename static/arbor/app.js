// Arbor: small progressive enhancements. Every page works without this file (links and forms are
// real); with it: Enter sends, the chat opens at its newest turn, older turns load on scroll,
// copy buttons, live status badges, readable errors for refused htmx requests.
(function () {
  "use strict";

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 160;
  }
  function toBottom() { window.scrollTo(0, document.documentElement.scrollHeight); }

  // Enter sends, Shift+Enter adds a line, in the composer and the edit boxes.
  document.addEventListener("keydown", function (event) {
    var t = event.target;
    if (t && t.matches && t.matches(".composer textarea, details.edit textarea") && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      var form = t.closest("form");
      if (form && t.value.trim()) { form.requestSubmit(); }
    }
  });

  // Older turns load when their loader scrolls into view (after the page has been scrolled down).
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        if (window.htmx) { window.htmx.trigger(entry.target, "older-visible"); }
      }
    });
  }, { rootMargin: "200px 0px 0px 0px" }) : null;
  function watchOlder(root) {
    if (!observer) { return; }
    (root || document).querySelectorAll(".load-older").forEach(function (el) { observer.observe(el); });
  }

  // Copy buttons: one per answer (hidden without JavaScript) and one per code block.
  function copyText(text, button) {
    var done = function () { var old = button.textContent; button.textContent = "Copied"; setTimeout(function () { button.textContent = old; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else { fallbackCopy(text); done(); }
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.className = "offscreen";
    document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing else to try */ }
    document.body.removeChild(area);
  }
  function enhance(root) {
    root = root || document;
    root.querySelectorAll("button.copy[data-copy]").forEach(function (b) { b.hidden = false; });
    root.querySelectorAll(".md pre").forEach(function (pre) {
      if (pre.querySelector(".copy-code")) { return; }
      var b = document.createElement("button");
      b.type = "button"; b.className = "copy-code"; b.textContent = "Copy";
      b.setAttribute("aria-label", "Copy code");
      pre.appendChild(b);
    });
    watchOlder(root);
  }
  document.addEventListener("click", function (event) {
    var b = event.target.closest && event.target.closest("button.copy[data-copy], button.copy-code");
    if (!b) { return; }
    if (b.classList.contains("copy-code")) {
      var code = b.parentNode.querySelector("code") || b.parentNode;
      copyText(code.innerText, b);
    } else {
      var target = document.querySelector(b.getAttribute("data-copy"));
      if (target) { copyText(target.innerText, b); }
    }
  });

  // After the thread is swapped: show the turn that was switched to, else the newest turn.
  var focusRun = null;
  var fromComposer = false;
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    focusRun = null; fromComposer = false;
    if (elt && elt.classList && elt.classList.contains("sib")) {
      focusRun = elt.getAttribute("data-run-id");
    } else if (elt && elt.classList && elt.classList.contains("composer")) {
      fromComposer = true;
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "thread" || (event.detail.elt && event.detail.elt.id === "thread")) {
      var turn = focusRun && document.getElementById("turn-" + focusRun);
      if (turn) {
        turn.scrollIntoView({ block: "start" });
        var nav = turn.querySelector(".siblings button");
        if (nav) { nav.focus({ preventScroll: true }); }
      } else {
        toBottom();
        if (fromComposer) { var input = document.getElementById("id_input"); if (input) { input.focus(); } }
      }
    }
  });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });

  // While a reply streams: keep the newest text in view if the reader is at the bottom; the
  // status badge follows "status" events (queued → running).
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var msg = event.detail;
    if (msg && msg.type === "status") {
      event.preventDefault();
      var badge = event.target.closest(".streaming") && event.target.closest(".streaming").querySelector(".status-badge");
      try {
        var data = JSON.parse(msg.data);
        if (badge && data.status) { badge.textContent = data.retrying ? "retrying: " + data.retrying : data.status; badge.setAttribute("data-status", data.status); }
      } catch (e) { /* not JSON: ignore */ }
      return;
    }
    if (msg && msg.type === "delta") { event.target.dataset.follow = nearBottom() ? "1" : ""; }
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.target && event.target.dataset && event.target.dataset.follow === "1") { toBottom(); }
  });

  // A refused htmx request (400/404/409/429): say why instead of doing nothing.
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

  document.addEventListener("DOMContentLoaded", function () {
    var thread = document.getElementById("thread");
    if (thread && !location.hash) { toBottom(); }
    enhance(document);
  });
})();
