// The summary of errors on top of a re-shown form takes the focus, so a
// screen reader reads it out and the keyboard starts there; its links take
// the focus to their field, with the field's label in view below the
// sticky header.
(function () {
  "use strict";
  var summary = document.querySelector(".error-summary");
  if (!summary) return;
  summary.focus();
  summary.addEventListener("click", function (e) {
    var link = e.target.closest("a[href^='#']");
    if (!link) return;
    var field = document.getElementById(link.getAttribute("href").slice(1));
    if (!field) return;
    e.preventDefault();
    var group = field.closest("fieldset");
    var label = document.querySelector("label[for='" + field.id + "']") ||
      (group && group.querySelector("legend")) || field;
    var header = document.querySelector("header.top");
    var above = header ? header.getBoundingClientRect().height : 0;
    window.scrollTo(0, label.getBoundingClientRect().top + window.scrollY - above - 8);
    field.focus({ preventScroll: true });
  });
})();
