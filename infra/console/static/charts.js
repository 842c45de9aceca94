/* driftline console: draws the uPlot charts whose data the page embeds as JSON (#chart-data).
   A threshold (dashed red) and alarm transitions (vertical lines) are drawn on the time axis. */
(function () {
  "use strict";
  var COLORS = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777"];
  var holder = document.getElementById("chart-data");
  if (!holder || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(holder.textContent);

  function overlay(spec) {
    return function (u) {
      var ctx = u.ctx, left = u.bbox.left, top = u.bbox.top, w = u.bbox.width, h = u.bbox.height;
      ctx.save();
      if (spec.threshold !== null && spec.threshold !== undefined) {
        var y = u.valToPos(spec.threshold, "y", true);
        if (y >= top && y <= top + h) {
          ctx.strokeStyle = "#dc2626"; ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
          ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + w, y); ctx.stroke();
        }
      }
      ctx.setLineDash([]);
      (spec.marks || []).forEach(function (m) {
        var x = u.valToPos(m.t, "x", true);
        if (x < left || x > left + w) { return; }
        ctx.strokeStyle = m.state === "ALARM" ? "rgba(220,38,38,0.75)" : "rgba(5,150,105,0.75)";
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      });
      ctx.restore();
    };
  }

  /* A time chart starts where its data (or an alarm transition) starts, not at the start of the
     range read: a stack that is minutes old fills the chart instead of its last pixels. */
  function xFit(spec, names) {
    var first = null;
    for (var i = 0; i < spec.x.length && first === null; i++) {
      for (var k = 0; k < names.length; k++) {
        if (spec.series[names[k]][i] !== null) { first = spec.x[Math.max(i - 1, 0)]; break; }
      }
    }
    if (first === null) { return undefined; }
    (spec.marks || []).forEach(function (m) { if (m.t >= spec.x[0]) { first = Math.min(first, m.t); } });
    var last = spec.x[spec.x.length - 1];
    if (first <= spec.x[0]) { return undefined; }
    return function (u, lo, hi) {  // the whole range: fitted; a drag-zoom inside it: as asked
      return lo <= spec.x[0] && hi >= last ? [first, last] : [lo, hi];
    };
  }

  function xScale(spec, names, opts) {
    var scale = { time: opts.time };
    var fit = opts.time ? xFit(spec, names) : undefined;
    if (fit) { scale.range = fit; }
    return scale;
  }

  function draw(el, spec, opts) {
    var names = Object.keys(spec.series);
    var rows = [spec.x].concat(names.map(function (n) { return spec.series[n]; }));
    var width = Math.max(el.clientWidth, 240);
    var series = [opts.xSeries].concat(names.map(function (n, i) {
      return { label: n, stroke: COLORS[i % COLORS.length], width: 1.6, spanGaps: false,
               points: { show: opts.points } };
    }));
    var cfg = {
      title: spec.title, width: width, height: opts.height, series: series,
      scales: { x: xScale(spec, names, opts), y: { range: function (u, lo, hi) {
        var top = Math.max(hi || 0, spec.threshold || 0) * 1.1;
        return [0, top > 0 ? top : 1];
      } } },
      axes: opts.axes,
      hooks: { draw: [overlay(spec)] },
      legend: { live: true }
    };
    el.dataset.points = String(spec.x.length);
    el.dataset.values = String(names.reduce(function (n, k) {
      return n + spec.series[k].filter(function (v) { return v !== null; }).length;
    }, 0));
    var plot = new uPlot(cfg, rows, el);
    el.dataset.drawn = "1";
    return plot;
  }

  var timeOpts = { time: true, height: 220, points: false, xSeries: {}, axes: undefined };
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var kind = el.getAttribute("data-chart");
    if (kind === "score" && data.score) {
      draw(el, data.score, Object.assign({}, timeOpts, { height: 240 }));
    } else if (kind === "feature" && data.features) {
      draw(el, data.features[Number(el.getAttribute("data-index"))], timeOpts);
    } else if (kind === "models" && data.models) {
      draw(el, data.models, { time: false, height: 240, points: true,
        xSeries: { label: "version", value: function (u, v) { return v === null ? "" : "v" + v; } },
        axes: [{ values: function (u, vals) { return vals.map(function (v) {
          return Number.isInteger(v) ? "v" + v : ""; }); } }, {}] });
    }
  });
})();
