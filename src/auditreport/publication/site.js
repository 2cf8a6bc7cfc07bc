/* The publication site's progressive enhancement (publication/pages.py): every page works without it.
   - Sort: each column heading of a table.sortable becomes a button; pressing it sorts the rows by that column
     and sets aria-sort on the heading. A cell's sort key is its data-sort (or that of an element inside it,
     e.g. a status, so statuses sort by severity), else its number ("1,077", "5.2%"), else its text; cells
     without a number ("*", "n/a") sort after every number in either direction.
   - Search: the search box above a table (hidden without JavaScript) filters its rows by name or code.
   - Funnels: the point under focus (Tab) or the pointer has its figures read out below the chart. */
(function () {
  "use strict";
  function key(cell) {
    if (!cell) { return ""; }
    var marked = cell.hasAttribute("data-sort") ? cell : cell.querySelector("[data-sort]");
    var t = marked ? marked.getAttribute("data-sort") : (cell.textContent || "").trim();
    var n = parseFloat(t.replace(/[,%\u00a3]/g, ""));
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
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    body.appendChild(frag);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, th, col); });
      // A click anywhere in the heading (its padding too, under a wrapped title) sorts as the button does.
      th.addEventListener("click", function (e) { if (e.target === th) { sortBy(table, th, col); } });
    });
  });

  function filter(box, table) {
    var input = box.querySelector("input");
    var count = box.querySelector(".search-count");
    var words = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    var rows = table.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var text = (rows[i].cells[0].textContent + " " + (rows[i].cells[1] ? rows[i].cells[1].textContent : "")).toLowerCase();
      var match = words.every(function (w) { return text.indexOf(w) >= 0; });
      rows[i].hidden = !match;
      if (match) { shown += 1; }
    }
    count.textContent = words.length ? "Showing " + shown + " of " + rows.length : "";
  }
  document.querySelectorAll("[data-search]").forEach(function (box) {
    var table = document.getElementById(box.getAttribute("data-search"));
    if (!table) { return; }
    box.hidden = false;
    box.querySelector("input").addEventListener("input", function () { filter(box, table); });
  });

  document.querySelectorAll("figure.funnel-figure").forEach(function (figure) {
    var readout = figure.querySelector("[data-readout]");
    if (!readout) { return; }
    readout.hidden = false;
    function show(e) {
      var unit = e.target.closest ? e.target.closest(".unit") : null;
      if (unit) { readout.textContent = unit.getAttribute("aria-label"); }
    }
    figure.addEventListener("focusin", show);
    figure.addEventListener("mouseover", show);
  });
})();
