/* l2h report: sortable tables and an interactive dendrogram per tree. Self-contained (no library, no network).
 *
 * A tree's data (see l2h/report/html.py, tree_payload) sits in a <script type="application/json"> element
 * whose id the data-src attribute of a "tree-view" div names. Node ids follow scipy: leaves 0..K-1, the node
 * made at merge step t (1-based) is K+t-1, children[t-1] = [G*, G†]. The view draws the visible part of the
 * tree (collapsed subtrees are one triangle) as one SVG, root on the left, leaves on the right, G* above G†.
 */
(function () {
  "use strict";

  var ROW = 16;          // px per visible tip at 100% (zooming changes it: the tree stretches vertically)
  var LABELLED = 7;      // below this many px per tip only search hits keep their label
  var CHAR = 7;          // px per character of a 12 px label (to leave room for the labels)
  var FULL = 2000;       // trees up to this many leaves open fully expanded ...
  var TIPS = 1000;       // ... bigger ones with only their last merges expanded (this many visible tips)

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c];
    });
  }

  function num(x, digits) {
    if (x === null || x === undefined || (typeof x === "number" && !isFinite(x))) { return "–"; }
    return Number(x).toPrecision(digits || 4).replace(/\.?0+(e|$)/, "$1");
  }

  function pct(x) { return (x === null || x === undefined) ? "–" : Math.round(100 * x) + "%"; }

  // ------------------------------------------------------------------------------------------- tree view
  function TreeView(root, data) {
    var k = data.k, n = 2 * k - 1, ch = data.children, v, t;
    this.root = root;
    this.data = data;
    this.k = k;
    this.n = n;
    this.parent = new Int32Array(n).fill(-1);
    this.leaves = new Int32Array(n);
    this.step = new Int32Array(n);
    this.depth = new Int32Array(n);
    for (v = 0; v < k; v++) { this.leaves[v] = 1; }
    for (t = 0; t < k - 1; t++) {
      v = k + t;
      this.parent[ch[t][0]] = v;
      this.parent[ch[t][1]] = v;
      this.leaves[v] = this.leaves[ch[t][0]] + this.leaves[ch[t][1]];
      this.step[v] = t + 1;
    }
    this.maxDepth = 1;
    for (v = n - 2; v >= 0; v--) {           // a parent always has a larger id than its children
      this.depth[v] = this.depth[this.parent[v]] + 1;
      if (this.depth[v] > this.maxDepth) { this.maxDepth = this.depth[v]; }
    }
    this.collapsed = new Uint8Array(n);
    if (k > FULL) {
      for (v = k; v < n - (TIPS - 1); v++) { this.collapsed[v] = 1; }
    }
    this.hits = null;
    this.layout = "step";
    this.row = ROW;
    this.view = {x: 20, y: 8};
    this.build();
    var longest = data.names.reduce(function (m, name) { return Math.max(m, String(name).length); }, 0);
    this.width = Math.max(300, Math.min(1600, this.svg.clientWidth - CHAR * (longest + 4) - 40));  // root → leaves
    this.render();
  }

  TreeView.prototype.build = function () {
    var self = this;
    this.root.innerHTML =
      '<div class="toolbar">' +
      '<input type="search" class="search" placeholder="search a class…" aria-label="search a class">' +
      '<span class="hits" aria-live="polite"></span>' +
      '<button type="button" data-act="in" title="zoom in">+</button>' +
      '<button type="button" data-act="out" title="zoom out">−</button>' +
      '<button type="button" data-act="fit" title="fit the whole tree">fit</button>' +
      '<button type="button" data-act="top" title="back to the top, 100%">reset</button>' +
      '<button type="button" data-act="expand" title="expand every subtree">expand all</button>' +
      '<label>x axis <select class="layout"><option value="step">merge step</option>' +
      '<option value="depth">depth</option></select></label>' +
      '<span class="help">wheel: zoom · drag: pan · click a node: collapse/expand · hover: details</span>' +
      '</div><svg class="canvas" role="img"><g class="viewport"></g></svg><div class="tooltip" hidden></div>';
    this.svg = this.root.querySelector("svg");
    this.g = this.root.querySelector("g.viewport");
    this.tip = this.root.querySelector(".tooltip");
    this.search = this.root.querySelector("input.search");
    this.root.querySelector(".toolbar").addEventListener("click", function (e) {
      var act = e.target.getAttribute && e.target.getAttribute("data-act");
      if (act === "in") { self.zoom(1.25); }
      else if (act === "out") { self.zoom(0.8); }
      else if (act === "fit") { self.fit(); }
      else if (act === "top") { self.row = ROW; self.view = {x: 20, y: 8}; self.render(); }
      else if (act === "expand") { self.collapsed.fill(0); self.render(); }
    });
    this.root.querySelector("select.layout").addEventListener("change", function (e) {
      self.layout = e.target.value;
      self.render();
    });
    this.search.addEventListener("input", function () { self.find(self.search.value); });
    this.search.addEventListener("keydown", function (e) { if (e.key === "Enter") { self.showFirstHit(); } });
    this.svg.addEventListener("wheel", function (e) {
      e.preventDefault();
      var box = self.svg.getBoundingClientRect();
      self.zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - box.left, e.clientY - box.top);
    }, {passive: false});
    var drag = null;
    this.svg.addEventListener("pointerdown", function (e) {
      drag = {x: e.clientX, y: e.clientY, vx: self.view.x, vy: self.view.y, moved: false};
    });
    this.svg.addEventListener("pointermove", function (e) {
      if (drag && (drag.moved || Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 3)) {
        if (!drag.moved) { self.svg.setPointerCapture(e.pointerId); }
        drag.moved = true;
        self.view.x = drag.vx + e.clientX - drag.x;
        self.view.y = drag.vy + e.clientY - drag.y;
        self.apply();
      }
    });
    this.svg.addEventListener("pointerup", function (e) {
      var node = drag && !drag.moved ? e.target.getAttribute("data-n") : null;
      drag = null;
      if (node !== null && node !== undefined && +node >= self.k) { self.toggle(+node); }
    });
    this.svg.addEventListener("mouseover", function (e) {
      var node = e.target.getAttribute("data-n");
      if (node === null) { return; }
      self.tip.innerHTML = self.describe(+node);
      self.tip.hidden = false;
      var box = self.root.getBoundingClientRect(), w = self.tip.offsetWidth, h = self.tip.offsetHeight;
      var left = e.clientX + 14 + w > window.innerWidth ? e.clientX - w - 14 : e.clientX + 14;   // stay on screen
      var top = e.clientY + 14 + h > window.innerHeight ? e.clientY - h - 14 : e.clientY + 14;
      self.tip.style.left = (left - box.left) + "px";
      self.tip.style.top = (top - box.top) + "px";
    });
    this.svg.addEventListener("mouseout", function () { self.tip.hidden = true; });
  };

  TreeView.prototype.x = function (v) {
    if (this.layout === "depth") { return this.width * this.depth[v] / this.maxDepth; }
    return this.width * (1 - this.step[v] / Math.max(1, this.k - 1));
  };

  TreeView.prototype.render = function () {
    var k = this.k, ch = this.data.children, names = this.data.names, collapsed = this.collapsed;
    var pre = [], stack = [this.n - 1], v, c, i;
    while (stack.length) {                       // pre-order, G* first
      v = stack.pop();
      pre.push(v);
      if (v >= k && !collapsed[v]) { c = ch[v - k]; stack.push(c[1], c[0]); }
    }
    var y = new Float64Array(this.n), rows = 0, row = this.row, font = Math.min(12, 0.75 * row);
    var r = Math.max(1.5, Math.min(4, row / 4)).toFixed(1), dy = 0.35 * font;
    for (i = 0; i < pre.length; i++) {
      v = pre[i];
      if (v < k || collapsed[v]) { y[v] = rows * row + row / 2; rows++; }
    }
    for (i = pre.length - 1; i >= 0; i--) {
      v = pre[i];
      if (v >= k && !collapsed[v]) { c = ch[v - k]; y[v] = (y[c[0]] + y[c[1]]) / 2; }
    }
    var links = [], marks = [], labels = [], support = this.data.support, x, text;
    var rootX = this.x(this.n - 1);
    links.push("M" + (rootX - 12) + "," + y[this.n - 1] + "H" + rootX);
    for (i = 0; i < pre.length; i++) {
      v = pre[i];
      x = this.x(v);
      if (v >= k && !collapsed[v]) {
        c = ch[v - k];
        links.push("M" + x + "," + y[c[0]] + "V" + y[c[1]] +
                   "M" + x + "," + y[c[0]] + "H" + this.x(c[0]) + "M" + x + "," + y[c[1]] + "H" + this.x(c[1]));
        var strength = support && support[v - k] !== null && support[v - k] !== undefined ?
          ' style="fill-opacity:' + (0.15 + 0.85 * support[v - k]).toFixed(2) + '"' : "";
        marks.push('<circle class="node" data-n="' + v + '" cx="' + x + '" cy="' + y[v] + '" r="' + r + '"' + strength + "/>");
      } else if (v >= k) {
        var end = this.layout === "depth" ? x + 40 : this.width;
        marks.push('<path class="collapsed" data-n="' + v + '" d="M' + x + "," + y[v] + "L" + end + "," +
                   (y[v] - row * 0.42) + "V" + (y[v] + row * 0.42) + 'Z"/>');
        text = "▸ " + this.leaves[v] + " leaves" + (this.data.majority ? ": " + this.majority(v) : "");
        labels.push('<text class="clabel" data-n="' + v + '" x="' + (end + 6) + '" y="' + (y[v] + dy) + '">' +
                    esc(text) + "</text>");
      } else {
        var hit = this.hits && this.hits.has(v) ? " hit" : "";
        labels.push('<text class="leaf' + hit + '" data-n="' + v + '" x="' + (x + 6) + '" y="' + (y[v] + dy) + '">' +
                    esc(names[v]) + "</text>");
      }
    }
    this.g.innerHTML = '<path class="links" d="' + links.join("") + '"/>' + marks.join("") + labels.join("");
    this.g.style.fontSize = font.toFixed(2) + "px";
    this.g.classList.toggle("small", row < LABELLED);
    this.svg.setAttribute("data-row", row.toFixed(3));
    this.rows = rows;
    this.y = y;
    if (!this.svg.style.height) {     // sized once: collapsing must not move the page under the pointer
      this.svg.style.height = Math.max(120, Math.min(rows * ROW + 24, 720)) + "px";
    }
    this.svg.setAttribute("aria-label", "dendrogram with " + rows + " visible tips");
    this.apply();
  };

  TreeView.prototype.apply = function () {
    this.g.setAttribute("transform", "translate(" + this.view.x + "," + this.view.y + ")");
  };

  // Zooming stretches the tree vertically (px per tip), keeping the tip under the pointer in place; the
  // labels keep their size, so a zoomed-out overview stays legible where it has room for them.
  TreeView.prototype.zoom = function (factor, cx, cy) {
    var box = this.svg.getBoundingClientRect(), old = this.row;
    this.row = Math.max(0.2, Math.min(64, old * factor));
    if (cy === undefined) { cy = box.height / 2; }
    this.view.y = cy - (cy - this.view.y) * this.row / old;
    this.render();
  };

  TreeView.prototype.fit = function () {
    var box = this.svg.getBoundingClientRect();
    this.row = Math.max(0.2, Math.min(ROW, (box.height - 16) / Math.max(1, this.rows)));
    this.view = {x: 20, y: 8};
    this.render();
  };

  TreeView.prototype.toggle = function (v) {
    this.collapsed[v] = this.collapsed[v] ? 0 : 1;
    this.render();
  };

  TreeView.prototype.find = function (query) {
    var q = query.trim().toLowerCase(), names = this.data.names, hits = new Set(), v, u;
    if (q) {
      for (v = 0; v < this.k; v++) {      // a leaf named "<class> (<share>%)" is searched by its class only
        if (String(names[v]).replace(/ \(\d+%\)$/, "").toLowerCase().indexOf(q) >= 0) {
          hits.add(v);
          for (u = this.parent[v]; u >= 0; u = this.parent[u]) { this.collapsed[u] = 0; }   // reveal it
        }
      }
    }
    this.hits = q ? hits : null;
    this.root.querySelector(".hits").textContent = q ? hits.size + (hits.size === 1 ? " leaf" : " leaves") : "";
    this.render();
  };

  TreeView.prototype.showFirstHit = function () {
    if (!this.hits || !this.hits.size) { return; }
    var first = Math.min.apply(null, Array.from(this.hits, function (v) { return this.y[v]; }, this));
    var box = this.svg.getBoundingClientRect();
    this.view.y = box.height / 2 - first;
    this.apply();
  };

  TreeView.prototype.majority = function (v) {
    var d = this.data;
    if (!d.majority || d.majority[v] < 0) { return "–"; }
    return d.classes[d.majority[v]] + " (" + pct(d.purity[v]) + ")";
  };

  TreeView.prototype.members = function (v) {
    var out = [], stack = [v], k = this.k, ch = this.data.children, u;
    while (stack.length && out.length < 6) {
      u = stack.pop();
      if (u < k) { out.push(this.data.names[u]); } else { stack.push(ch[u - k][1], ch[u - k][0]); }
    }
    return out.join(", ") + (this.leaves[v] > out.length ? ", …" : "");
  };

  TreeView.prototype.describe = function (v) {
    var d = this.data, k = this.k, rows = [], t;
    var title = v < k ? esc(d.names[v]) : "node " + v + " · merge " + this.step[v] + " of " + (k - 1);
    rows.push(["leaves", this.leaves[v] + (v < k ? " (leaf " + v + ")" : "")]);
    if (d.points) { rows.push(["points", d.points[v]]); }
    if (d.majority) { rows.push(["majority class", this.majority(v)]); }
    if (v >= k) {
      t = v - k;
      if (d.support) { rows.push(["support", num(d.support[t], 3)]); }
      var c = d.children[t];
      rows.push(["G*", "node " + c[0] + " (" + this.leaves[c[0]] + "): " + this.members(c[0])]);
      rows.push(["G†", "node " + c[1] + " (" + this.leaves[c[1]] + "): " + this.members(c[1])]);
      if (d.scores) {
        for (var j = 0; j < d.score_names.length; j++) { rows.push([d.score_names[j], num(d.scores[t][j])]); }
      }
      if (d.heights) { rows.push(["height", num(d.heights[t])]); }
      if (this.collapsed[v]) { rows.push(["", "collapsed: click to expand"]); }
    }
    return "<b>" + title + "</b><table>" + rows.map(function (r) {
      return "<tr><th>" + esc(r[0]) + "</th><td>" + esc(r[1]) + "</td></tr>";
    }).join("") + "</table>";
  };

  // ------------------------------------------------------------------------------------------- tables
  function sortKey(cell) {
    var text = cell.textContent.trim(), m = /^[+\-−]?\d+(\.\d+)?(e[+\-]?\d+)?/i.exec(text);
    if (text === "–" || text === "") { return null; }
    return m ? parseFloat(m[0].replace("−", "-")) : text.toLowerCase();
  }

  function sortable(table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent;
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var a = sortKey(r1.cells[col]), b = sortKey(r2.cells[col]);
          if (a === null || b === null) { return (a === null) - (b === null); }   // empty cells last
          var cmp = (typeof a === typeof b) ? (a < b ? -1 : a > b ? 1 : 0) : (typeof a === "number" ? -1 : 1);
          return asc ? cmp : -cmp;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function init() {
    document.querySelectorAll("table.sortable").forEach(sortable);
    document.querySelectorAll(".tree-view").forEach(function (el) {
      var data = JSON.parse(document.getElementById(el.getAttribute("data-src")).textContent);
      el.l2hTree = new TreeView(el, data);
    });
    window.l2hRendered = performance.now();
    document.documentElement.setAttribute("data-rendered", "1");
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
