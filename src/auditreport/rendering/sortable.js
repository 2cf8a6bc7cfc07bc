/* Click (or press Enter on) a column header to sort the table; inline, no external script.
   A cell's sort key is its data-sort attribute (or that of an element inside it, e.g. a flag badge,
   so flags sort by severity), else its number ("1,077", "5.2%", "3.9% to 6.7%" sort by the first
   number), else its text. Suppressed cells ("*") sort after every number in either direction. */
(function () {
  function key(cell) {
    if (!cell) { return ""; }
    var marked = cell.hasAttribute("data-sort") ? cell : cell.querySelector("[data-sort]");
    var t = marked ? marked.getAttribute("data-sort") : (cell.textContent || "").trim();
    var n = parseFloat(t.replace(/[,%£]/g, ""));
    return isNaN(n) ? t.toLowerCase() : n;
  }
  function sortBy(table, th, col) {
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._order = i; });
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (typeof x !== typeof y) { return typeof x === "number" ? -1 : 1; }
      var c = (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      return c || a._order - b._order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.setAttribute("tabindex", "0");
      th.setAttribute("title", "Sort by this column");
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
})();
