/* Span waterfalls of the session page (issue 16): a turn's <details class="turn-trace"> loads
   its spans from the trace.json twin (data-trace-url) the first time it opens, and draws one
   row per span: kind + name, a bar on the turn's time axis, the duration; failed spans in red
   with their error. Only textContent and style widths: span names are user data. */
(function () {
  "use strict";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmt(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "";
    if (ms < 1) return "<1 ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
  }

  function pct(value, span) {
    return Math.max(0, Math.min(100, (value / span) * 100));
  }

  // Depth of each span in its tree (parents first; a missing parent is a root).
  function depths(spans) {
    var byId = {};
    spans.forEach(function (s) { byId[s.id] = s; });
    var memo = {};
    function depth(s, guard) {
      if (memo[s.id] !== undefined) return memo[s.id];
      if (!s.parent || !byId[s.parent] || guard > 50) return (memo[s.id] = 0);
      return (memo[s.id] = depth(byId[s.parent], guard + 1) + 1);
    }
    spans.forEach(function (s) { depth(s, 0); });
    return memo;
  }

  function draw(box, data) {
    box.textContent = "";
    var spans = (data.spans || []).filter(function (s) { return s && typeof s === "object"; });
    if (!spans.length) {
      box.appendChild(el("p", "wf-note", data.traced ? "The trace has no spans." : "No trace recorded for this turn."));
      return;
    }
    var end = 0;
    spans.forEach(function (s) {
      var start = Number(s.start_ms) || 0;
      end = Math.max(end, start + (Number(s.duration_ms) || 0));
    });
    (data.traces || []).forEach(function (t) {
      end = Math.max(end, (Number(t.start_ms) || 0) + (Number(t.duration_ms) || 0));
    });
    var total = end > 0 ? end : 1;
    var levels = depths(spans);

    var axis = el("div", "wf-axis");
    axis.appendChild(el("span", "", "span"));
    var ticks = el("div", "wf-ticks");
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) {
      var tick = el("span", "wf-tick", f === 0 ? "0" : fmt(total * f));
      tick.style.left = f * 100 + "%";
      ticks.appendChild(tick);
    });
    axis.appendChild(ticks);
    axis.appendChild(el("span", "wf-duration", "duration"));
    box.appendChild(axis);

    var list = el("div", "wf-rows");
    list.setAttribute("role", "list");
    spans.forEach(function (s) {
      var row = el("div", "wf-row" + (s.error ? " wf-error" : ""));
      row.setAttribute("role", "listitem");
      row.dataset.kind = String(s.kind || "");
      var label = el("span", "wf-label");
      label.style.paddingLeft = Math.min(levels[s.id] || 0, 8) * 0.8 + "rem";
      label.appendChild(el("span", "wf-kind", s.kind));
      label.appendChild(document.createTextNode(" " + (s.name || "")));
      var tip = [String(s.kind || "") + " " + String(s.name || "")];
      if (s.model && s.model !== s.name) tip.push("model " + s.model);
      if (s.input_tokens !== null && s.input_tokens !== undefined) {
        tip.push(s.input_tokens + " in / " + (s.output_tokens || 0) + " out tokens");
      }
      if (s.cost) tip.push(s.cost);
      if (s.error) tip.push("error: " + s.error);
      row.title = tip.join(" · ");
      var track = el("div", "wf-track");
      var bar = el("span", "wf-bar");
      bar.dataset.kind = String(s.kind || "");
      var start = Number(s.start_ms) || 0;
      var duration = Number(s.duration_ms) || 0;
      bar.style.left = pct(start, total) + "%";
      bar.style.width = Math.max(pct(duration, total), 0.3) + "%";
      track.appendChild(bar);
      row.appendChild(label);
      row.appendChild(track);
      row.appendChild(el("span", "wf-duration", fmt(duration)));
      list.appendChild(row);
      if (s.error) row.appendChild(el("div", "wf-error-text", s.error));
    });
    box.appendChild(list);
    if (data.truncated) {
      box.appendChild(el("p", "wf-note", "Only the first " + spans.length + " spans are shown."));
    }
  }

  function load(details) {
    if (details.dataset.loaded) return;
    details.dataset.loaded = "loading";
    var box = details.querySelector(".waterfall");
    fetch(details.dataset.traceUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        draw(box, data);
        details.dataset.loaded = "true";
      })
      .catch(function () {
        box.textContent = "";
        box.appendChild(el("p", "alert", "Could not load the spans of this turn."));
        delete details.dataset.loaded;
      });
  }

  // Delegated: turns added later ("load earlier", live updates) work too.
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (details && details.matches && details.matches("details.turn-trace") && details.open) load(details);
  }, true);

  window.forkviewWaterfall = { draw: draw, format: fmt };
})();
