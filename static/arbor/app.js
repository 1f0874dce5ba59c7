// Arbor: small progressive enhancements. The pages work without this file.
(function () {
  "use strict";
  // Enter sends, Shift+Enter adds a line, in the composer.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && target.matches && target.matches(".composer textarea") && event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      var form = target.closest("form");
      if (form && target.value.trim()) { form.requestSubmit(); }
    }
  });
})();
