/* Token charts of the session page, drawn with the vendored Chart.js from the usage.json twin.
   window.forkviewCharts = { perTurn, cumulative, data } once drawn (tests read it). */
(function () {
  "use strict";
  var section = document.getElementById("token-charts");
  if (!section || !window.Chart) return;
  var css = getComputedStyle(document.documentElement);
  function v(name) { return css.getPropertyValue(name).trim() || "#888"; }
  var palette = ["#4263eb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f59f00", "#c2255c", "#5c940d"];
  Chart.defaults.color = v("--muted");
  Chart.defaults.borderColor = v("--border");
  Chart.defaults.font.family = "system-ui, sans-serif";

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
      window.forkviewCharts = { perTurn: perTurn, cumulative: cumulative, data: data };
      section.dataset.ready = "true";
    })
    .catch(function (err) {
      section.dataset.ready = "error";
      var p = document.createElement("p"); p.className = "alert"; p.textContent = "Could not load usage data.";
      section.appendChild(p);
    });
})();
