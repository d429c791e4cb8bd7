/* Forkview review workflow on the session page (no build step, no dependencies).
   - Writes go to <session>/annotations/... as JSON with the CSRF token; each answer carries the
     re-rendered score bar of the target, the session summary and the branch's figures, which
     replace their elements in place (no reload, one renderer: the server's templates).
   - The target of a key is the focused turn (j / k in forkview.js move the focus), or the
     session / branch notes (s / b). Keys never fire while typing in a field.
       1 / 2  thumbs up / down (the first thumbs score; pressing the active one again clears it)
       3-9    the other scores, in order: a small prompt for the value (Enter saves)
       c      comment (markdown; Ctrl+Enter saves)      t  tag (Enter adds)
       r / f  mark reviewed / needs fix and open the next session of my queue; n skips
       ?      the list of keys; Esc closes a prompt or the list
   - A moderator deletes other people's comments and tags ([data-action=moderate]), giving an
     optional reason (the audit trail keeps it).
   - Turns added by "Load earlier turns" get their bars from <session>/annotations/?turns=... */
(function () {
  "use strict";

  var page = document.getElementById("session-page");
  if (!page || !window.fetch) return;
  var base = page.dataset.annotationsUrl;
  var canWrite = page.dataset.canAnnotate === "true";
  var canModerate = page.dataset.canModerate === "true";
  var definitions = [];
  try {
    definitions = JSON.parse(page.dataset.definitions || "[]");
  } catch (e) { definitions = []; }

  // ---- Helpers ---------------------------------------------------------------------------

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function definition(name) {
    for (var i = 0; i < definitions.length; i++) if (definitions[i].name === name) return definitions[i];
    return null;
  }

  function byKey(key) {
    for (var i = 0; i < definitions.length; i++) if (definitions[i].key === key) return definitions[i];
    return null;
  }

  function fragment(html) {
    var box = document.createElement("div");
    box.innerHTML = html.trim();
    return box.firstElementChild;
  }

  function status(text) {
    var region = document.getElementById("note-status");
    if (!region) {
      region = document.createElement("p");
      region.id = "note-status";
      region.className = "note-status visually-hidden";
      region.setAttribute("role", "status");
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    region.textContent = text;
  }

  function typing(event) {
    var t = event.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function holderOf(el) { return el && el.closest ? el.closest("article.turn, .note-target") : null; }
  function barOf(holder) { return holder ? holder.querySelector("[data-note-bar]") : null; }

  function bars(branch, turn) {
    return Array.prototype.filter.call(document.querySelectorAll("[data-note-bar]"), function (bar) {
      return bar.dataset.branch === branch && bar.dataset.turn === String(turn);
    });
  }

  function targetOf(bar) {
    return { branch_id: bar.dataset.branch || "", turn: parseInt(bar.dataset.turn, 10) || 0 };
  }

  /** The focused turn or notes; else the turn at the top of the screen (then focused). */
  function currentHolder() {
    var holder = holderOf(document.activeElement);
    if (holder) return holder;
    var focused = document.body.dataset.focusedTurn;
    if (focused) {
      var el = document.getElementById("turn-" + focused);
      if (el) return el;
    }
    var list = document.querySelectorAll("article.turn");
    for (var i = 0; i < list.length; i++) {
      if (list[i].getBoundingClientRect().bottom > 80) { focusHolder(list[i]); return list[i]; }
    }
    return document.getElementById("session-target");
  }

  function focusHolder(holder) {
    if (!holder) return;
    holder.focus({ preventScroll: true });
    var box = holder.getBoundingClientRect();
    if (box.top < 60 || box.top > window.innerHeight - 80) holder.scrollIntoView({ block: "start" });
    if (holder.dataset.turn) document.body.dataset.focusedTurn = holder.dataset.turn;
  }

  function showError(bar, message) {
    var box = bar && bar.querySelector(".note-error");
    if (box) { box.textContent = message; box.hidden = false; }
    status(message);
  }

  // ---- Writes ----------------------------------------------------------------------------

  function send(path, body, bar) {
    if (bar) bar.setAttribute("aria-busy", "true");
    return fetch(base + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), "X-Requested-With": "fetch" },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().then(
        function (data) { return { ok: response.ok, data: data }; },
        function () { return { ok: false, data: { error: "The server answered " + response.status + "." } }; }
      );
    }).then(function (answer) {
      if (bar) bar.removeAttribute("aria-busy");
      if (!answer.ok) { showError(bar, answer.data.error || "Not saved."); return null; }
      apply(answer.data);
      return answer.data;
    }, function () {
      if (bar) bar.removeAttribute("aria-busy");
      showError(bar, "Not saved: the server could not be reached.");
      return null;
    });
  }

  function apply(data) {
    var html = data.html || {};
    var target = data.target;
    if (html.bar && target) {
      bars(target.branch_id, target.turn).forEach(function (old) {
        var holder = holderOf(old);
        var hadFocus = old.contains(document.activeElement);
        old.replaceWith(fragment(html.bar));
        if (hadFocus && holder) holder.focus({ preventScroll: true });
      });
    }
    if (html.summary) {
      var summary = document.getElementById("review-summary");
      if (summary) summary.replaceWith(fragment(html.summary));
    }
    if (html.branch) {
      Array.prototype.forEach.call(document.querySelectorAll("[data-branch-scores]"), function (el) {
        if (el.dataset.branchScores === html.branch.id) el.replaceWith(fragment(html.branch.html));
      });
    }
    status("Saved.");
  }

  function thumb(bar, value) {
    var thumbs = null;
    for (var i = 0; i < definitions.length; i++) if (definitions[i].key === "1") thumbs = definitions[i];
    if (!thumbs || !bar) return;
    var button = bar.querySelector("[data-action=thumb][data-value='" + value + "']");
    var target = targetOf(bar);
    target.definition = thumbs.name;
    if (button && button.getAttribute("aria-pressed") === "true") {
      send("score/clear/", target, bar);
    } else {
      target.value = value;
      send("score/", target, bar);
    }
  }

  // ---- Prompts (score value, comment, tag) -----------------------------------------------

  function closeEditor(bar, refocus) {
    var editor = bar && bar.querySelector(".note-editor");
    if (!editor) return;
    editor.innerHTML = "";
    editor.hidden = true;
    if (refocus) focusHolder(holderOf(bar));
  }

  function openEditor(bar, build) {
    if (!bar) return;
    Array.prototype.forEach.call(document.querySelectorAll(".note-editor:not([hidden])"), function (other) {
      if (other.closest("[data-note-bar]") !== bar) { other.innerHTML = ""; other.hidden = true; }
    });
    var editor = bar.querySelector(".note-editor");
    var error = bar.querySelector(".note-error");
    if (error) error.hidden = true;
    editor.innerHTML = "";
    var form = document.createElement("form");
    form.className = "note-form";
    editor.appendChild(form);
    editor.hidden = false;
    var field = build(form);
    var actions = document.createElement("div");
    actions.className = "note-form-actions";
    var save = document.createElement("button");
    save.type = "submit";
    save.className = "button primary";
    save.textContent = form.dataset.saveLabel || "Save";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button";
    cancel.textContent = "Cancel";
    cancel.addEventListener("click", function () { closeEditor(bar, true); });
    actions.appendChild(save);
    actions.appendChild(cancel);
    if (form.dataset.hint) {
      var hint = document.createElement("span");
      hint.className = "small muted";
      hint.textContent = form.dataset.hint;
      actions.appendChild(hint);
    }
    form.appendChild(actions);
    form.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); closeEditor(bar, true); }
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
    });
    if (field) field.focus();
  }

  function labelled(form, text, control) {
    var label = document.createElement("label");
    label.className = "note-label small";
    label.textContent = text;
    control.id = "note-field-" + Math.random().toString(36).slice(2);
    label.htmlFor = control.id;
    form.appendChild(label);
    form.appendChild(control);
    return control;
  }

  function promptScore(bar, name) {
    var def = definition(name);
    if (!def || !bar) return;
    var chip = bar.querySelector("[data-action=score][data-definition='" + CSS.escape(name) + "']");
    var mine = chip ? chip.dataset.mine : "";
    openEditor(bar, function (form) {
      var control;
      if (def.kind === "numeric") {
        control = document.createElement("input");
        control.type = "number";
        control.step = "any";
        if (def.min_value !== null) control.min = def.min_value;
        if (def.max_value !== null) control.max = def.max_value;
        control.value = mine;
        control.required = true;
        control.className = "note-value";
      } else {
        control = document.createElement("select");
        control.className = "note-value";
        var options = def.kind === "boolean" ? [["1", "up"], ["0", "down"]] : def.labels.map(function (l) { return [l, l]; });
        options.forEach(function (pair) {
          var option = document.createElement("option");
          option.value = pair[0];
          option.textContent = pair[1];
          if (pair[0] === mine) option.selected = true;
          control.appendChild(option);
        });
      }
      var range = def.kind === "numeric" ? " (" + def.min_value + "–" + def.max_value + ")" : "";
      labelled(form, def.name + range + (def.description ? ": " + def.description : ""), control);
      form.dataset.hint = "Enter saves · Esc cancels";
      if (mine) {
        var clear = document.createElement("button");
        clear.type = "button";
        clear.className = "link-button small";
        clear.textContent = "Remove my score";
        clear.addEventListener("click", function () {
          var target = targetOf(bar);
          target.definition = def.name;
          send("score/clear/", target, bar);
        });
        form.appendChild(clear);
      }
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var target = targetOf(bar);
        target.definition = def.name;
        var raw = control.value;
        target.value = def.kind === "numeric" ? Number(raw) : def.kind === "boolean" ? Number(raw) : raw;
        send("score/", target, bar);
      });
      return control;
    });
  }

  function promptComment(bar, id, body) {
    openEditor(bar, function (form) {
      var area = document.createElement("textarea");
      area.rows = 3;
      area.className = "note-text";
      area.value = body || "";
      area.required = true;
      labelled(form, id ? "Edit your comment (markdown)" : "Comment (markdown)", area);
      form.dataset.hint = "Ctrl+Enter saves · Esc cancels";
      form.dataset.saveLabel = id ? "Save" : "Comment";
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        if (id) {
          send(id + "/", { body: area.value }, bar);
        } else {
          var target = targetOf(bar);
          target.body = area.value;
          send("comment/", target, bar);
        }
      });
      return area;
    });
  }

  function promptTag(bar) {
    openEditor(bar, function (form) {
      var input = document.createElement("input");
      input.type = "text";
      input.className = "note-tag";
      input.maxLength = 64;
      input.required = true;
      input.autocomplete = "off";
      labelled(form, "Tag", input);
      form.dataset.hint = "Enter adds · Esc cancels";
      form.dataset.saveLabel = "Add tag";
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var target = targetOf(bar);
        target.label = input.value.trim();
        send("tag/", target, bar);
      });
      return input;
    });
  }

  // ---- Clicks ----------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-note-bar] [data-action]");
    if (button && canModerate && button.dataset.action === "moderate") {
      // Someone else's comment or tag: a moderator deletes it, with an optional reason.
      var reason = window.prompt(
        "Delete " + button.dataset.author + "'s " + button.dataset.what +
        " (moderation)? Reason, optional (recorded in the audit trail):", "");
      if (reason !== null) send(button.dataset.id + "/delete/", { reason: reason }, button.closest("[data-note-bar]"));
      return;
    }
    if (button && canWrite) {
      var bar = button.closest("[data-note-bar]");
      var action = button.dataset.action;
      if (action === "thumb") thumb(bar, button.dataset.value);
      else if (action === "score") promptScore(bar, button.dataset.definition);
      else if (action === "comment") promptComment(bar);
      else if (action === "tag") promptTag(bar);
      else if (action === "edit") promptComment(bar, button.dataset.id, button.dataset.body);
      else if (action === "delete") {
        var isTag = button.classList.contains("chip-remove");
        if (isTag || window.confirm("Delete this comment?")) send(button.dataset.id + "/delete/", {}, bar);
      }
      return;
    }
    if (event.target.closest && event.target.closest("#keys-help-open")) openHelp();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "review-form") return;
    event.preventDefault();
    var body = { status: form.elements.status.value };
    var assignee = form.elements.assignee;
    if (assignee && assignee.value !== assignee.dataset.initial) body.assignee = assignee.value;
    send("review/", body, null).then(function (data) {
      if (data) status("Review status: " + data.review.status.replace("_", " ") + ".");
    });
  });

  // ---- Keys ------------------------------------------------------------------------------

  function openHelp() {
    var help = document.getElementById("keys-help");
    if (help && !help.open) help.showModal();
  }

  function queueButton(id) {
    var button = document.getElementById(id);
    if (!button) return false;
    button.form.requestSubmit(button);
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
    if (document.querySelector("dialog[open]")) return;
    var key = event.key;
    if (key === "?") { event.preventDefault(); openHelp(); return; }
    if (key === "s" || key === "b") {
      var notes = document.getElementById(key === "s" ? "session-target" : "branch-target");
      if (notes) { event.preventDefault(); notes.scrollIntoView({ block: "nearest" }); notes.focus({ preventScroll: true }); }
      return;
    }
    if (!canWrite) return;
    if (key === "r" || key === "f" || key === "n") {
      var id = { r: "queue-reviewed", f: "queue-needs-fix", n: "queue-skip" }[key];
      if (queueButton(id)) event.preventDefault();
      return;
    }
    if (key === "1" || key === "2") {
      event.preventDefault();
      thumb(barOf(currentHolder()), key === "1" ? "1" : "0");
    } else if (/^[3-9]$/.test(key)) {
      var def = byKey(key);
      if (def) { event.preventDefault(); promptScore(barOf(currentHolder()), def.name); }
    } else if (key === "c") {
      event.preventDefault();
      promptComment(barOf(currentHolder()));
    } else if (key === "t") {
      event.preventDefault();
      promptTag(barOf(currentHolder()));
    }
  });

  // ---- Turns added later ("Load earlier turns") get their bars -------------------------------

  var list = document.getElementById("turn-list");
  if (list && window.MutationObserver) {
    new MutationObserver(function () {
      var bare = Array.prototype.filter.call(list.querySelectorAll("article.turn"), function (turn) {
        return !turn.querySelector("[data-note-bar]") && !turn.dataset.notesPending;
      });
      if (!bare.length) return;
      bare.forEach(function (turn) { turn.dataset.notesPending = "1"; });
      var url = base + "?branch=" + encodeURIComponent(page.dataset.branch) + "&turns=" +
        bare.map(function (turn) { return turn.dataset.turn; }).join(",");
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) {
          bare.forEach(function (turn) {
            var html = data.bars[turn.dataset.turn];
            if (html && !turn.querySelector("[data-note-bar]")) turn.appendChild(fragment(html));
            delete turn.dataset.notesPending;
          });
        })
        .catch(function () { bare.forEach(function (turn) { delete turn.dataset.notesPending; }); });
    }).observe(list, { childList: true });
  }

  if (page.dataset.queue === "true" && !location.hash) {
    var first = document.querySelector("article.turn");
    if (first) focusHolder(first);
  }
})();
