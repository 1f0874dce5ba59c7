// Fan-out in the composer: "Ask all" says how many are picked and is enabled for 2 to 4 picks;
// once 4 are picked the other boxes are disabled. Without this file the server checks the count.
(function () {
  "use strict";
  function update(form) {
    var boxes = form.querySelectorAll(".fan-pick input[name=variant]");
    var send = form.querySelector(".fan-send");
    if (!send) { return; }
    var picked = 0;
    boxes.forEach(function (box) { if (box.checked) { picked += 1; } });
    boxes.forEach(function (box) { box.disabled = !box.checked && picked >= 4; });
    send.disabled = picked < 2 || picked > 4;
    send.textContent = picked >= 2 ? "Ask all " + picked : "Ask all (pick 2 to 4)";
  }
  document.addEventListener("change", function (event) {
    var t = event.target;
    if (t && t.matches && t.matches(".fan-pick input[name=variant]")) { update(t.form); }
  });
  // On phones the answers are cards side by side: bring the shown one into view.
  function showShown() {
    document.querySelectorAll(".fan-cols").forEach(function (row) {
      var shown = row.querySelector(".fan-col.shown");
      if (shown && row.scrollWidth > row.clientWidth) { row.scrollLeft = shown.offsetLeft - row.offsetLeft; }
    });
  }
  function init() { document.querySelectorAll("form.composer").forEach(update); showShown(); }
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:afterSettle", init);
})();
