/* Insights charts (latency p50/p95 per day, cost per day by model), drawn with the vendored
   Chart.js from the /insights.json twin. window.forkviewInsights = { latency, cost, data } once
   drawn (tests read it). */
(function () {
  "use strict";
  var section = document.getElementById("insights-charts");
  if (!section || !window.Chart) return;
  var css = getComputedStyle(document.documentElement);
  function v(name) { return css.getPropertyValue(name).trim() || "#888"; }
  var palette = ["#4263eb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f59f00", "#c2255c", "#5c940d"];
  Chart.defaults.color = v("--muted");
  Chart.defaults.borderColor = v("--border");
  Chart.defaults.font.family = "system-ui, sans-serif";
  function usd(value) { return "$" + (value !== 0 && Math.abs(value) < 0.01 ? value.toFixed(4) : value.toFixed(2)); }
  function ms(value) { return value >= 1000 ? (value / 1000).toFixed(value >= 10000 ? 0 : 1) + " s" : Math.round(value) + " ms"; }

  fetch(section.dataset.jsonUrl, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
    .then(function (data) {
      var labels = data.days.map(function (d) { return d.day; });
      var latency = new Chart(document.getElementById("chart-latency"), {
        type: "line",
        data: {
          labels: labels,
          datasets: [
            { label: "p50", data: data.days.map(function (d) { return d.p50_ms; }), borderColor: palette[0], backgroundColor: palette[0], spanGaps: true, pointRadius: 2, tension: 0 },
            { label: "p95", data: data.days.map(function (d) { return d.p95_ms; }), borderColor: palette[1], backgroundColor: palette[1], spanGaps: true, pointRadius: 2, tension: 0 }
          ]
        },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          scales: { x: { ticks: { autoSkip: true, maxTicksLimit: 10 } },
                    y: { beginAtZero: true, title: { display: true, text: "turn latency" }, ticks: { callback: ms } } },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
                     tooltip: { callbacks: { label: function (item) { return item.dataset.label + ": " + (item.parsed.y === null ? "no turns" : ms(item.parsed.y)); } } } }
        }
      });
      var models = {};
      data.days.forEach(function (d) { Object.keys(d.usd_by_model).forEach(function (m) { models[m] = true; }); });
      var names = Object.keys(models).sort();
      var cost = new Chart(document.getElementById("chart-cost"), {
        type: "bar",
        data: {
          labels: labels,
          datasets: names.map(function (name, i) {
            return { label: name, stack: "cost", backgroundColor: palette[i % palette.length],
                     data: data.days.map(function (d) { return d.usd_by_model[name] ? parseFloat(d.usd_by_model[name]) : 0; }) };
          })
        },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          scales: { x: { stacked: true, ticks: { autoSkip: true, maxTicksLimit: 10 } },
                    y: { stacked: true, beginAtZero: true, title: { display: true, text: "cost" }, ticks: { callback: usd } } },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
                     tooltip: { callbacks: { label: function (item) { return item.dataset.label + ": " + usd(item.parsed.y); } } } }
        }
      });
      window.forkviewInsights = { latency: latency, cost: cost, data: data };
    })
    .catch(function (err) {
      var note = document.createElement("p");
      note.className = "warn-text";
      note.textContent = "The charts could not load (" + err.message + ").";
      section.appendChild(note);
    });
})();
