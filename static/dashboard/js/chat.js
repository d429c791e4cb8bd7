/* Forkview live chat (vanilla JS, no build step).
 *
 * Opens /ws/chat/<session_id>/?branch=<branch_id>, streams the agent's answer into the page
 * (delta / tool_call / tool_output / message / turn_complete), and offers Edit (fork from a
 * user turn and resubmit) and Regenerate (fork from a turn and resend its message) on every
 * turn. While a turn runs, Stop (or Esc) sends `cancel`: the turn stops and nothing of it is
 * stored (`cancelled`). A finished turn is replaced by the server's rendering of the stored turn
 * (`turn_complete.html`: markdown, tool cards, tokens, the trace line with latency and cost),
 * exactly as the page shows it after a reload. Protocol: docs/websocket-protocol.md.
 */
(function () {
  "use strict";

  const page = document.getElementById("chat-page");
  if (!page) return;
  const log = document.getElementById("chat-log");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const send = document.getElementById("chat-send");
  const stop = document.getElementById("chat-stop");
  const statusEl = document.getElementById("chat-status");
  const branchEl = document.getElementById("current-branch");
  const backendEl = document.getElementById("backend-label");
  const maxBytes = parseInt(page.dataset.maxBytes || "32768", 10);
  const reviewBase = page.dataset.reviewBase;

  let branch = page.dataset.branch;
  let socket = null;
  let ready = false;
  let running = false;   // a turn of ours is in flight
  let live = null;       // {article, assistant, tools: Map(call_id -> details), text}
  let lastSent = null;   // {kind, text, turn}: restored into the box if the turn fails
  let retryDelay = 500;

  // ---- Small DOM helpers ------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    });
    (children || []).forEach((child) => child && node.appendChild(child));
    return node;
  }

  function setStatus(text, kind) {
    statusEl.textContent = text;
    statusEl.className = "chat-status small " + (kind || "muted");
  }

  // Stop shows while a turn of ours runs (and sends `cancel` once).
  function setRunning(value) {
    running = value;
    stop.hidden = !value;
    stop.disabled = !value;
  }

  function setEnabled(enabled) {
    input.disabled = !enabled;
    send.disabled = !enabled;
    log.querySelectorAll(".turn-tools button").forEach((b) => { b.disabled = !enabled; });
  }

  function reviewUrl(branchId) {
    return reviewBase + "?" + new URLSearchParams({ branch: branchId }).toString();
  }

  function scrollToEnd() {
    window.scrollTo({ top: document.body.scrollHeight });
  }

  // The server's `tokens` filter, so live turns read like stored ones: 999, 1,003, 12.3k, 1.23M.
  function formatMs(ms) {
    if (ms === null || ms === undefined) return "";
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  function formatTokens(n) {
    if (Math.abs(n) >= 1000000) return (n / 1000000).toFixed(2) + "M";
    if (Math.abs(n) >= 10000) return (n / 1000).toFixed(1) + "k";
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  // ---- Turns --------------------------------------------------------------------------------

  function turns() {
    return Array.from(log.querySelectorAll("article.turn"));
  }

  function userText(article) {
    const node = article.querySelector(".turn-user .text");
    return node ? node.innerText.trim() : "";
  }

  function addTurnTools(article) {
    const head = article.querySelector(".turn-head");
    if (!head || head.querySelector(".turn-tools")) return;
    const edit = el("button", { type: "button", class: "chat-edit", title: "Edit this message: the edit becomes a new branch", text: "Edit" });
    const regen = el("button", { type: "button", class: "chat-regenerate", title: "Answer this message again on a new branch", text: "Regenerate" });
    edit.addEventListener("click", () => startEdit(article));
    regen.addEventListener("click", () => regenerate(article));
    head.appendChild(el("span", { class: "turn-tools" }, [edit, regen]));
    edit.disabled = regen.disabled = !ready || running;
  }

  function startEdit(article) {
    if (running || article.querySelector(".chat-edit-form")) return;
    const bubble = article.querySelector(".turn-user");
    const area = el("textarea", { "aria-label": "Edited message" });
    area.value = userText(article);
    const save = el("button", { type: "submit", class: "chat-edit-save", text: "Save & submit" });
    const cancel = el("button", { type: "button", text: "Cancel" });
    const editForm = el("form", { class: "chat-edit-form" }, [area, el("div", {}, [save, cancel])]);
    cancel.addEventListener("click", () => editForm.remove());
    editForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = area.value;
      if (!checkText(text)) return;
      editForm.remove();
      submit({ type: "fork", turn: Number(article.dataset.turn), text: text }, text, Number(article.dataset.turn));
    });
    bubble.appendChild(editForm);
    area.focus();
  }

  // "Fork from here" on the review page opens the chat with ?fork=N: edit turn N once ready.
  function openRequestedEdit() {
    const turn = page.dataset.forkTurn;
    if (!turn) return;
    delete page.dataset.forkTurn;
    const article = turns().find((a) => a.dataset.turn === turn);
    if (!article) return;
    startEdit(article);
    article.scrollIntoView({ block: "center" });
  }

  function regenerate(article) {
    if (running) return;
    const turn = Number(article.dataset.turn);
    submit({ type: "regenerate", turn: turn }, userText(article), turn);
  }

  function dropTurnsFrom(turn) {
    // A new branch keeps the turns before the fork; the rest is another branch now.
    turns().forEach((article) => {
      if (Number(article.dataset.turn) >= turn) article.remove();
    });
    log.querySelectorAll(".load-later").forEach((n) => n.remove());
  }

  function startLiveTurn(text) {
    const empty = document.getElementById("empty-branch");
    if (empty) empty.remove();
    const number = el("span", { class: "turn-number", text: "Turn …" });
    const head = el("header", { class: "turn-head" }, [number]);
    const user = el("div", { class: "bubble bubble-user turn-user" }, [
      el("div", { class: "role", text: "User" }),
      el("div", { class: "text plain", text: text }),
    ]);
    const article = el("article", { class: "turn turn-live", "data-branch": branch }, [head, user]);
    const stale = document.getElementById("cancel-notice");
    if (stale) stale.remove();
    const list = log.querySelector(".turn-list") || log;
    list.querySelectorAll(":scope > p.muted").forEach((n) => n.remove());
    list.appendChild(article);
    live = { article: article, assistant: null, tools: new Map(), text: "" };
    scrollToEnd();
  }

  function assistantBubble() {
    if (!live.assistant) {
      const text = el("div", { class: "text" });
      live.assistant = el("div", { class: "bubble bubble-assistant turn-item streaming", "data-kind": "assistant" }, [
        el("div", { class: "role", text: "Assistant" }), text,
      ]);
      live.article.appendChild(live.assistant);
      live.text = "";
    }
    return live.assistant;
  }

  // ---- Sending ------------------------------------------------------------------------------

  function checkText(text) {
    if (!text.trim()) { setStatus("Type a message first.", "error"); return false; }
    if (new TextEncoder().encode(text).length > maxBytes) {
      setStatus("That message is too large (max " + Math.floor(maxBytes / 1024) + " KB).", "error");
      return false;
    }
    return true;
  }

  function submit(message, displayText, forkTurn) {
    if (!ready || running) return;
    setRunning(true);
    lastSent = { message: message, text: displayText, forkTurn: forkTurn };
    setEnabled(false);
    setStatus(message.type === "user_message" ? "Thinking…" : "Creating a branch…", "muted");
    if (message.type === "user_message") startLiveTurn(displayText);
    socket.send(JSON.stringify(message));
  }

  function cancelTurn() {
    if (!running || !socket || socket.readyState !== WebSocket.OPEN || stop.disabled) return;
    stop.disabled = true;
    setStatus("Stopping…", "muted");
    socket.send(JSON.stringify({ type: "cancel" }));
  }

  stop.addEventListener("click", cancelTurn);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && running && !event.isComposing) {
      event.preventDefault();
      cancelTurn();
    }
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!checkText(text)) return;
    input.value = "";
    submit({ type: "user_message", text: text }, text, null);
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // ---- Receiving ----------------------------------------------------------------------------

  const handlers = {
    ready(msg) {
      ready = true;
      backendEl.textContent = msg.backend;
      setStatus("Connected · " + msg.backend, "muted");
      setEnabled(!running);
      turns().forEach(addTurnTools);
      openRequestedEdit();
    },
    branch_created(msg) {
      branch = msg.branch_id;
      page.dataset.branch = branch;
      branchEl.textContent = branch;
      const url = new URL(window.location.href);
      url.searchParams.set("branch", branch);
      window.history.replaceState({}, "", url);
      dropTurnsFrom(msg.turn);
      const link = el("a", { href: reviewUrl(branch), id: "new-branch-link", text: branch });
      const notice = el("p", { class: "chat-notice small", id: "branch-notice" }, [
        document.createTextNode("New branch "), link,
        document.createTextNode(" from turn " + msg.turn + " of " + msg.from_branch + "."),
      ]);
      const old = document.getElementById("branch-notice");
      if (old) old.remove();
      log.insertBefore(notice, log.firstChild);
      startLiveTurn(lastSent ? lastSent.text : "");
      setStatus("Branch " + branch + " created · thinking…", "muted");
    },
    delta(msg) {
      if (!live) return;
      const bubble = assistantBubble();
      live.text += msg.text;
      bubble.querySelector(".text").textContent = live.text;
      setStatus("Streaming…", "muted");
      scrollToEnd();
    },
    message(msg) {
      if (!live) return;
      const bubble = assistantBubble();
      bubble.classList.remove("streaming");
      bubble.querySelector(".text").textContent = msg.text;
      live.assistant = null;  // a later message (after more tools) gets its own bubble
    },
    tool_call(msg) {
      if (!live) return;
      live.assistant = null;
      const output = el("pre", { class: "json tool-output" });
      const details = el("details", { class: "turn-item tool-call live-tool", "data-kind": "tool", "data-tool": msg.name, "data-call-id": msg.call_id || "", open: "" }, [
        el("summary", {}, [el("span", { class: "tool-icon", "aria-hidden": "true", text: "⚙" }), el("span", { class: "tool-name", text: " " + msg.name })]),
        el("div", { class: "tool-body" }, [
          el("h4", { text: "Arguments" }), el("pre", { class: "json tool-arguments", text: msg.arguments || "" }),
          el("h4", { text: "Output" }), output,
        ]),
      ]);
      live.tools.set(msg.call_id, output);
      live.article.appendChild(details);
      setStatus("Calling " + msg.name + "…", "muted");
      scrollToEnd();
    },
    tool_output(msg) {
      if (!live) return;
      const output = live.tools.get(msg.call_id);
      if (output) output.textContent = msg.output;
    },
    turn_complete(msg) {
      if (live) {
        let article = live.article;
        const fresh = renderedTurn(msg.html);
        if (fresh) {
          // The stored turn as the page renders it after a reload.
          fresh.classList.add("turn-live", "turn-rendered");
          article.replaceWith(fresh);
          article = fresh;
        } else {
          article.dataset.turn = String(msg.turn);
          article.dataset.branch = msg.branch_id;
          article.id = "turn-" + msg.turn;
          article.querySelector(".turn-number").textContent = "Turn " + msg.turn;
          article.querySelectorAll(".streaming").forEach((n) => n.classList.remove("streaming"));
          const u = msg.usage || {};
          const badge = el("span", { class: "token-badge", title: (u.requests || 0) + " request(s) · " + (u.total_tokens || 0) + " tokens" }, [
            el("span", { class: "tok-in", "aria-label": "input tokens", text: "↑ " + formatTokens(u.input_tokens || 0) }),
            el("span", { class: "tok-out", "aria-label": "output tokens", text: " ↓ " + formatTokens(u.output_tokens || 0) }),
          ]);
          article.querySelector(".turn-head").appendChild(badge);
        }
        addTurnTools(article);
      }
      live = null;
      setRunning(false);
      lastSent = null;
      setEnabled(true);
      const u = msg.usage || {};
      const parts = ["Turn " + msg.turn + " stored on " + msg.branch_id];
      if (msg.latency_ms !== undefined && msg.latency_ms !== null) {
        parts.push(formatMs(msg.latency_ms) + (msg.ttft_ms !== null && msg.ttft_ms !== undefined ? " (first token " + formatMs(msg.ttft_ms) + ")" : ""));
      }
      if (msg.cost) parts.push(msg.cost);
      parts.push(formatTokens(u.total_tokens || 0) + " tokens (↑ " + formatTokens(u.input_tokens || 0) + " ↓ " + formatTokens(u.output_tokens || 0) + ")");
      setStatus(parts.join(" · "), "muted");
      input.focus();
    },
    cancelled(msg) {
      // Stopped: nothing of the turn was stored (a fork's new branch stays, without it).
      failTurn("Stopped. Nothing of that turn was stored; edit and send again when ready.", "muted");
      const notice = document.getElementById("cancel-notice");
      if (notice) notice.remove();
      const list = log.querySelector(".turn-list") || log;
      list.appendChild(el("p", { class: "chat-notice small muted", id: "cancel-notice", text: "Turn stopped on " + msg.branch_id + ": nothing was stored." }));
    },
    error(msg) { failTurn(msg.message, "error"); },
    busy(msg) { failTurn(msg.message || "Busy: another turn is running on this branch.", "busy"); },
  };

  // The server's rendering of a stored turn (sanitised markdown, from the same partial as
  // the page), as an element; null when there is none.
  function renderedTurn(html) {
    if (!html) return null;
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    const node = template.content.firstElementChild;
    return node && node.matches("article.turn") ? node : null;
  }

  function failTurn(text, kind) {
    if (live) {
      live.article.classList.add("turn-failed");
      live.article.remove();  // nothing was stored: the page shows the branch as stored
    }
    if (running && lastSent && lastSent.message.type === "user_message" && !input.value) {
      input.value = lastSent.text;  // ready to retry
    }
    live = null;
    setRunning(false);
    setEnabled(ready);
    setStatus(text, kind);
  }

  // ---- The socket ---------------------------------------------------------------------------

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + window.location.host + page.dataset.wsPath + "?" + new URLSearchParams({ branch: branch });
    socket = new WebSocket(url);
    socket.addEventListener("open", () => { retryDelay = 500; });
    socket.addEventListener("message", (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      const handler = handlers[msg.type];
      if (handler) handler(msg);
    });
    socket.addEventListener("close", (event) => {
      ready = false;
      setEnabled(false);
      if (event.code === 4401) { setStatus("Your login expired: reload the page to sign in again.", "error"); return; }
      if (event.code === 4403) { setStatus("You don't have permission to continue conversations.", "error"); return; }
      if (running) failTurn("Connection lost. If the turn finished on the server it is stored; reconnecting…", "error");
      setStatus("Disconnected · reconnecting…", "error");
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    });
  }

  turns().forEach((article) => { if (article.dataset.turn) addTurnTools(article); });
  if (!page.dataset.forkTurn && !window.location.hash) {
    window.scrollTo({ top: document.body.scrollHeight, behavior: "instant" });  // latest turn
  }
  connect();
})();
