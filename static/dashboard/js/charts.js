/* Token charts of the session page, drawn with the vendored Chart.js from the usage.json twin.
   window.forkviewCharts = { perTurn, cumulative, tools, cost, data } once drawn (tests read it). */
(function () {
  "use strict";
  var section = document.getElementById("token-charts");
  if (!section || !window.Chart) return;
  var css = getComputedStyle(document.documentElement);
  function v(name) { return css.getPropertyValue(name).trim() || "#888"; }
  var palette = ["#4263eb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f59f00", "#c2255c", "#5c940d"];
  // Tools get colours no branch uses, so "calculator" is never mistaken for "main" beside it.
  var toolPalette = ["#0ca678", "#7048e8", "#e67700", "#d6336c", "#15aabf", "#74b816", "#845ef7", "#868e96"];
  Chart.defaults.color = v("--muted");
  Chart.defaults.borderColor = v("--border");
  Chart.defaults.font.family = "system-ui, sans-serif";

  // Tool calls per turn, one stacked dataset per tool (null: the branch called no tool).
  function drawTools(data, labels) {
    var figure = document.getElementById("tool-chart-figure");
    var byTool = {};
    data.tool_calls.forEach(function (row) {
      (byTool[row.tool] = byTool[row.tool] || {})[row.turn] = row.calls;
    });
    var names = Object.keys(byTool).sort();
    var summary = document.getElementById("chart-tools-summary");
    if (!names.length) {
      summary.textContent = "No tool calls on this branch.";
      figure.querySelector(".chart-box").hidden = true;
      return null;
    }
    summary.textContent = names.map(function (name) {
      var total = 0;
      Object.keys(byTool[name]).forEach(function (turn) { total += byTool[name][turn]; });
      return name + " × " + total;
    }).join(" · ");
    return new Chart(document.getElementById("chart-tools"), {
      type: "bar",
      data: {
        labels: labels,
        datasets: names.map(function (name, i) {
          return { label: name, stack: "tools", backgroundColor: toolPalette[i % toolPalette.length],
                   data: labels.map(function (turn) { return byTool[name][turn] || 0; }) };
        })
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true, title: { display: true, text: "turn" }, ticks: { autoSkip: true, maxTicksLimit: 12 } },
                  y: { stacked: true, beginAtZero: true, grace: "10%", ticks: { precision: 0 }, title: { display: true, text: "calls" } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        onClick: function (evt, elements) { if (elements.length) { location.hash = "turn-" + labels[elements[0].index]; } }
      }
    });
  }

  // Cost: bars per turn of this branch, cumulative lines per branch (USD; null: no trace/price).
  function drawCost(data, labels) {
    var figure = document.getElementById("cost-chart-figure");
    if (!figure) return null;
    var summary = document.getElementById("chart-cost-summary");
    var priced = data.per_turn.some(function (p) { return p.cost_usd !== null && p.cost_usd !== undefined; });
    if (!priced) {
      summary.textContent = "No priced model calls on this branch.";
      figure.querySelector(".chart-box").hidden = true;
      return null;
    }
    summary.textContent = data.path_cost ? "Along this branch: " + data.path_cost + "." : "";
    var lastLabel = labels.length ? labels[labels.length - 1] : 1;
    function usd(value) {
      if (!value) return "$0";
      return "$" + (value < 0.01 ? Number(value.toPrecision(2)) : value.toFixed(2));
    }
    var lastTurn = 0;
    data.cumulative.forEach(function (line) {
      (line.cost_points || []).forEach(function (p) { lastTurn = Math.max(lastTurn, p.turn); });
    });
    var lines = data.cumulative.map(function (line, i) {
      var colour = palette[i % palette.length];
      return {
        type: "line", label: line.branch, yAxisID: "total",
        data: (line.cost_points || []).map(function (p) { return { x: p.turn, y: p.usd }; }),
        borderColor: colour, backgroundColor: colour, borderWidth: line.current ? 3 : 1.5,
        pointRadius: (line.cost_points || []).length > 60 ? 0 : 2, tension: 0
      };
    });
    return new Chart(document.getElementById("chart-cost"), {
      type: "bar",
      data: {
        datasets: [{
          type: "bar", label: "per turn (left axis)", yAxisID: "turn", backgroundColor: v("--chart-out"),
          data: data.per_turn.map(function (p) { return { x: p.turn, y: p.cost_usd }; })
        }].concat(lines)
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: {
          x: { type: "linear", min: 0, max: Math.max(lastTurn, lastLabel), title: { display: true, text: "turn" }, ticks: { precision: 0 } },
          turn: { position: "left", beginAtZero: true, ticks: { callback: usd, maxTicksLimit: 5 } },
          total: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, ticks: { callback: usd, maxTicksLimit: 5 } }
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: function (item) { return item.dataset.label + ": " + (item.parsed.y === null ? "no price" : usd(item.parsed.y)); } } }
        },
        onClick: function (evt, elements) {
          if (elements.length && elements[0].datasetIndex === 0) { location.hash = "turn-" + labels[elements[0].index]; }
        }
      }
    });
  }

  fetch(section.dataset.usageUrl, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
    .then(function (data) {
      var labels = data.per_turn.map(function (p) { return p.turn; });
      var missing = data.missing_turns;
      var note = document.getElementById("chart-missing");
      if (note && missing.length) {
        note.textContent = missing.length + " turn" + (missing.length > 1 ? "s" : "") + " without usage (" +
          missing.slice(0, 8).join(", ") + (missing.length > 8 ? ", …" : "") + ") shown as gaps.";
      }
      var perTurn = new Chart(document.getElementById("chart-per-turn"), {
        type: "bar",
        data: {
          labels: labels,
          datasets: [
            { label: "input", data: data.per_turn.map(function (p) { return p.input_tokens; }), backgroundColor: v("--chart-in"), stack: "t" },
            { label: "output", data: data.per_turn.map(function (p) { return p.output_tokens; }), backgroundColor: v("--chart-out"), stack: "t" }
          ]
        },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          scales: { x: { stacked: true, title: { display: true, text: "turn" }, ticks: { autoSkip: true, maxTicksLimit: 12 } }, y: { stacked: true, beginAtZero: true } },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
                     tooltip: { callbacks: { afterBody: function (items) { var p = data.per_turn[items[0].dataIndex]; return p.missing ? "no usage row" : (p.owner !== data.branch ? "(row of " + p.owner + ")" : ""); } } } },
          onClick: function (evt, elements) { if (elements.length) { location.hash = "turn-" + labels[elements[0].index]; } }
        }
      });
      var datasets = data.cumulative.map(function (line, i) {
        var colour = palette[i % palette.length];
        return {
          label: line.branch, data: line.points.map(function (p) { return { x: p.turn, y: p.tokens }; }),
          borderColor: colour, backgroundColor: colour, borderWidth: line.current ? 3 : 1.5,
          pointRadius: line.points.length > 60 ? 0 : 2, tension: 0, parsing: true
        };
      });
      var cumulative = new Chart(document.getElementById("chart-cumulative"), {
        type: "line",
        data: { datasets: datasets },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          scales: { x: { type: "linear", title: { display: true, text: "turn" }, ticks: { precision: 0 } }, y: { beginAtZero: true } },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } }
        }
      });
      var tools = drawTools(data, labels);
      var cost = drawCost(data, labels);
      window.forkviewCharts = { perTurn: perTurn, cumulative: cumulative, tools: tools, cost: cost, data: data };
      section.dataset.ready = "true";
    })
    .catch(function (err) {
      section.dataset.ready = "error";
      var p = document.createElement("p"); p.className = "alert"; p.textContent = "Could not load usage data.";
      section.appendChild(p);
    });
})();
