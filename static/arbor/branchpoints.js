// Branch points in the chat (templates/conversations/_branch_points.html): keys to move between
// turns, between branch points and between the versions of the focused turn; the panel's links
// jump within the page when the turn is already on it. Without this file every marker and panel
// entry is a plain link. Keys (also listed on the page behind "?"):
//   j / k        next / previous turn
//   n / p        next / previous branch point (a turn with other versions)
//   l / h, → / ← next / previous version of the focused turn (its sibling navigator's buttons)
//   b            the branch points list
//   ?            show or hide the list of keys
(function () {
  "use strict";

  function thread() { return document.getElementById("thread"); }
  function turns() { var t = thread(); return t ? Array.prototype.slice.call(t.querySelectorAll("article.turn")) : []; }
  function turnOf(el) { return el && el.closest ? el.closest("article.turn") : null; }

  var said = null;
  function say(text) {
    if (!said) {
      said = document.createElement("p");
      said.className = "bp-said"; said.setAttribute("role", "status"); said.setAttribute("aria-live", "polite");
      document.body.appendChild(said);
    }
    said.textContent = text;
  }

  // The turn keys act on: the focused one, else the one at the top of the window, else the newest.
  function current() {
    var focused = turnOf(document.activeElement);
    if (focused) { return focused; }
    var list = turns();
    for (var i = 0; i < list.length; i++) {
      if (list[i].getBoundingClientRect().bottom > 80) { return list[i]; }
    }
    return list[list.length - 1] || null;
  }

  function focusTurn(turn) {
    if (!turn) { return; }
    if (!turn.hasAttribute("tabindex")) { turn.setAttribute("tabindex", "-1"); }
    turn.scrollIntoView({ block: "start" });
    turn.focus({ preventScroll: true });
    markCurrent(turn.getAttribute("data-run-id"));
  }

  // The panel's entries: <li id="bp-<run id>"><a href=…>.
  function entries() { return Array.prototype.slice.call(document.querySelectorAll("#branch-points li[id^='bp-'] > a")); }
  function runOf(link) { return link.parentNode.id.slice(3); }

  function markCurrent(runId) {
    document.querySelectorAll("#branch-points a.current").forEach(function (a) { a.classList.remove("current"); });
    var item = runId && document.getElementById("bp-" + runId);
    if (item) { item.firstElementChild.classList.add("current"); }
  }

  function moveTurn(step) {
    var list = turns(), at = list.indexOf(current());
    var next = list[at + step];
    if (next) { focusTurn(next); } else { say(step > 0 ? "This is the newest turn." : "This is the oldest turn shown."); }
  }

  // Branch points: the markers on the page, and the panel's entries for those above the turns shown.
  function moveBranchPoint(step) {
    var list = turns(), at = list.indexOf(current());
    for (var i = at + step; i >= 0 && i < list.length; i += step) {
      if (list[i].querySelector(".bp-marker")) { focusTurn(list[i]); return; }
    }
    if (step < 0) {  // above the turns shown: the last panel entry whose turn is not on the page
      var above = entries().filter(function (a) { return !document.getElementById("turn-" + runOf(a)); });
      if (above.length) { location.assign(above[above.length - 1].href); return; }
    }
    say(step > 0 ? "No branch point below this turn." : "No branch point above this turn.");
  }

  function switchVersion(step) {
    var turn = current();
    var button = turn && turn.querySelector(".siblings button.sib." + (step > 0 ? "next" : "prev") + ":not(:disabled)");
    if (button) { button.click(); } else { say(turn && turn.querySelector(".siblings") ? "No " + (step > 0 ? "newer" : "older") + " version." : "This turn has one version."); }
  }

  function toggleKeys() {
    var box = document.getElementById("bp-keys");
    if (!box) { return; }
    box.open = !box.open;
    if (box.open) { box.scrollIntoView({ block: "nearest" }); box.querySelector("summary").focus({ preventScroll: true }); }
  }

  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (!thread() || event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    if (event.target.closest && event.target.closest(".treemap")) { return; }
    var key = event.key, active = document.activeElement;
    var onTurn = active && (active.matches("article.turn") || !!active.closest(".siblings"));
    var actions = {
      "j": function () { moveTurn(1); }, "k": function () { moveTurn(-1); },
      "n": function () { moveBranchPoint(1); }, "p": function () { moveBranchPoint(-1); },
      "l": function () { switchVersion(1); }, "h": function () { switchVersion(-1); },
      "b": function () { var first = document.querySelector("#branch-points a.current") || entries()[0]; if (first) { first.focus(); } },
      "?": toggleKeys
    };
    if (onTurn) { actions.ArrowRight = actions.l; actions.ArrowLeft = actions.h; }
    if (actions[key]) { event.preventDefault(); actions[key](); }
  });

  // A panel entry (or a marker's link to it): jump within the page when the turn is on it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("#branch-points li[id^='bp-'] > a");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    var turn = document.getElementById("turn-" + runOf(link));
    if (!turn) { return; }  // not on the page: the link loads the page that shows it
    event.preventDefault();
    history.replaceState(null, "", "#turn-" + runOf(link));
    focusTurn(turn);
  });

  // Arriving at a turn's anchor (a jump from another page): keys continue from that turn.
  document.addEventListener("DOMContentLoaded", function () {
    var m = /^#turn-([0-9a-f-]+)$/.exec(location.hash);
    var turn = m && document.getElementById("turn-" + m[1]);
    if (turn) { turn.setAttribute("tabindex", "-1"); turn.focus({ preventScroll: true }); markCurrent(m[1]); }
  });
  // After a version switch (the thread swapped): the panel's entry of the focused turn stays marked.
  document.addEventListener("htmx:afterSettle", function () { var t = turnOf(document.activeElement); if (t) { markCurrent(t.getAttribute("data-run-id")); } });
})();
