// Enhances the change form; the form works without it.
// - previews the risk level as the answers change (the server computes it,
//   here and again on save);
// - on a new form, preselects the browser's current UTC offset.
(function () {
  "use strict";
  var form = document.getElementById("change-form");
  if (!form) return;
  var out = document.getElementById("risk-preview");
  var names = ["impact", "likelihood", "touches_production_data", "customer_facing",
    "changes_security_control", "rollback_untested", "outside_usual_window"];

  function update() {
    var params = new URLSearchParams();
    names.forEach(function (n) {
      var el = form.elements[n];
      if (!el) return;
      if (el.type === "checkbox") { if (el.checked) params.set(n, "on"); }
      else params.set(n, el.value);
    });
    fetch("/changes/risk-preview?" + params.toString(), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) out.innerHTML = html; })
      .catch(function () { /* the preview is a convenience */ });
  }

  form.addEventListener("change", function (e) {
    if (names.indexOf(e.target.name) >= 0) update();
  });

  var tz = form.elements["window_tz"];
  if (tz && tz.dataset.fresh === "1") {
    var m = -new Date().getTimezoneOffset();
    var pad = function (n) { return String(n).padStart(2, "0"); };
    var s = (m >= 0 ? "+" : "-") + pad(Math.floor(Math.abs(m) / 60)) + ":" + pad(Math.abs(m) % 60);
    for (var i = 0; i < tz.options.length; i++) {
      if (tz.options[i].value === s) tz.value = s;
    }
  }
})();
