"use strict";
// Comparison browser: rows are embedded once as JSON (#cb-data) and rendered a page at a time.
// Data only ever reaches the page through textContent (never innerHTML).
(function () {
  var el = document.getElementById("cb-data");
  if (!el) return;
  var data = JSON.parse(el.textContent);
  var rows = data.rows, per = data.page || 20, page = 0, shown = [], hay = null;
  var $ = function (id) { return document.getElementById(id); };
  var q = $("cb-q"), fm = $("cb-model"), fv = $("cb-verdict"), fd = $("cb-dis"), fs = $("cb-stage");
  var list = $("cb-list"), count = $("cb-count"), pageEl = $("cb-page");

  function h(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }
  data.models.forEach(function (m) { var o = h("option", null, m); o.value = m; fm.appendChild(o); });
  var stages = {};
  rows.forEach(function (r) { stages[r.s] = 1; });
  if (Object.keys(stages).length > 1) $("cb-stage-l").hidden = false;

  function haystack(i) {
    if (!hay) hay = new Array(rows.length);
    if (hay[i] === undefined) {
      var r = rows[i], parts = [r.p, r.ra, r.rb, r.ma, r.mb, r.c, r.e, r.i];
      (r.x || []).forEach(function (c) { parts.push(c[2], c[3]); });
      hay[i] = parts.join("\n").toLowerCase();
    }
    return hay[i];
  }
  function disagree(r) {
    return r.h !== undefined && (r.w === "a" || r.w === "b" || r.w === "tie") && r.w !== r.h;
  }
  function filter() {
    var qs = q.value.trim().toLowerCase(), m = fm.value, v = fv.value, d = fd.value, s = fs.value;
    shown = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (m && r.ma !== m && r.mb !== m) continue;
      if (v && r.w !== v) continue;
      if (s && r.s !== s) continue;
      if (d === "human" && !disagree(r)) continue;
      if (d === "agree" && !(r.h !== undefined && r.w === r.h)) continue;
      if (d === "order" && r.k !== false) continue;
      if (qs && haystack(i).indexOf(qs) < 0) continue;
      shown.push(i);
    }
    page = 0;
    draw();
  }
  function verdictText(r) {
    if (r.w === "a") return "a wins (" + (r.ma || "a") + ")";
    if (r.w === "b") return "b wins (" + (r.mb || "b") + ")";
    if (r.w === "tie") return "tie";
    if (r.w === "fail") return "failed";
    return "unjudged";
  }
  function side(label, model, text, won) {
    var d = h("div", "cb-side" + (won ? " won" : ""));
    d.appendChild(h("h4", "data", label + ": " + (model || "?") + (won ? "  ✓" : "")));
    d.appendChild(h("pre", "data text", text));
    return d;
  }
  function item(r, idx) {
    var box = h("article", "cb-item");
    var head = h("div", "cb-head");
    head.appendChild(h("span", null, "#" + (idx + 1)));
    if (r.i) head.appendChild(h("span", "data", "prompt " + r.i));
    if (r.c) head.appendChild(h("span", "data", r.c));
    head.appendChild(h("span", null, r.s));
    var pill = h("span", "pill " + (r.w === "fail" ? "fail" : (r.w === "a" || r.w === "b") ? "win" : ""), verdictText(r));
    head.appendChild(pill);
    if (r.pa !== undefined) head.appendChild(h("span", null, "P(a)=" + r.pa));
    if (r.h !== undefined) head.appendChild(h("span", "pill" + (disagree(r) ? " dis" : ""), "human: " + r.h));
    if (r.k === false) head.appendChild(h("span", "pill dis", "orders disagree"));
    if (r.j) head.appendChild(h("span", "data", "judge " + r.j));
    box.appendChild(head);
    var pr = h("details", "cb-prompt");
    pr.open = true;
    pr.appendChild(h("summary", null, "prompt"));
    pr.appendChild(h("pre", "data text", r.p));
    if (r.ref) { pr.appendChild(h("div", "muted", "reference")); pr.appendChild(h("pre", "data text", r.ref)); }
    box.appendChild(pr);
    var pair = h("div", "cb-pair");
    pair.appendChild(side("A", r.ma, r.ra, r.w === "a"));
    pair.appendChild(side("B", r.mb, r.rb, r.w === "b"));
    box.appendChild(pair);
    if (r.e) box.appendChild(h("p", "bad data", "error: " + r.e));
    if (r.x && r.x.length) {
      var det = h("details", "cb-raw");
      det.appendChild(h("summary", null, "judge output (" + r.x.length + " call" + (r.x.length > 1 ? "s" : "") + ")"));
      r.x.forEach(function (c) {
        det.appendChild(h("div", "muted data", "shown first: " + c[0] + " · verdict: " + (c[1] || "–") + (c[3] ? " · error: " + c[3] : "")));
        det.appendChild(h("pre", "data text", c[2] || ""));
      });
      box.appendChild(det);
    }
    return box;
  }
  function draw() {
    var pages = Math.max(1, Math.ceil(shown.length / per));
    if (page >= pages) page = pages - 1;
    var frag = document.createDocumentFragment();
    var start = page * per, end = Math.min(shown.length, start + per);
    for (var k = start; k < end; k++) frag.appendChild(item(rows[shown[k]], shown[k]));
    if (!shown.length) frag.appendChild(h("p", "muted", "No comparison matches these filters."));
    list.replaceChildren(frag);
    count.textContent = "(" + shown.length + " of " + rows.length + ")";
    pageEl.textContent = "page " + (page + 1) + " of " + pages;
    $("cb-prev").disabled = page === 0;
    $("cb-next").disabled = page >= pages - 1;
  }
  var timer = null;
  q.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(filter, 150); });
  q.addEventListener("change", function () { clearTimeout(timer); filter(); });  // Enter / blur
  [fm, fv, fd, fs].forEach(function (s) { s.addEventListener("change", filter); });
  $("cb-prev").addEventListener("click", function () { page--; draw(); list.scrollIntoView(); });
  $("cb-next").addEventListener("click", function () { page++; draw(); list.scrollIntoView(); });
  filter();
})();
