// Pietura desk: keyboard shortcuts only; every page works without this file.
// Queue: j / k move between items, Enter (or o) opens the selected one.
// Item page: the suggested unit is preselected in the assign form (never submitted by itself).
(function () {
  "use strict";
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-href]"));
  var at = -1;
  function select(i) {
    if (!rows.length) return;
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, n) { r.classList.toggle("selected", n === at); });
    var link = rows[at].querySelector("a");
    if (link) link.focus();
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "j") { select(at + 1); e.preventDefault(); }
    else if (e.key === "k") { select(at - 1); e.preventDefault(); }
    else if ((e.key === "Enter" || e.key === "o") && at >= 0) { window.location = rows[at].getAttribute("data-href"); }
  });
  var suggested = document.querySelector("#assign-unit option[data-suggested]");
  if (suggested) { suggested.selected = true; }
})();
