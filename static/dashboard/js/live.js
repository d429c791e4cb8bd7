/* Forkview live updates for the session (review) page (vanilla JS, no build step).
 *
 * Listens on /ws/sessions/<session_id>/ for turn_complete and branch_created (sent by the
 * live chat, in any server process when the Redis channel layer is configured) and shows
 * "N new turns — reload" for this branch, or a link to a branch created meanwhile. When the
 * server says the channel layer is down (live_status false) the banner says updates are
 * paused; when they resume it offers a reload (turns stored meanwhile were not announced).
 */
(function () {
  "use strict";

  const banner = document.getElementById("live-updates");
  if (!banner || !("WebSocket" in window)) return;
  const branch = banner.dataset.branch;
  let newTurns = 0;
  const newBranches = [];
  let paused = false;
  let resumed = false;
  let delay = 1000;

  function reviewUrl(branchId) {
    return banner.dataset.reviewBase + "?" + new URLSearchParams({ branch: branchId }).toString();
  }

  function render() {
    banner.textContent = "";
    banner.classList.toggle("live-paused", paused);
    if (paused) {
      banner.appendChild(document.createTextNode(
        "Live updates are paused (the server cannot reach its message broker); new turns " +
        "are still stored. Retrying…"));
    } else if (resumed && !newTurns) {
      const reload = document.createElement("a");
      reload.href = reviewUrl(branch);
      reload.id = "live-resumed";
      reload.textContent = "Live updates are back — reload to see turns stored meanwhile";
      banner.appendChild(reload);
    }
    if (newTurns) {
      const reload = document.createElement("a");
      reload.href = reviewUrl(branch);
      reload.id = "live-reload";
      reload.textContent = newTurns + " new turn" + (newTurns === 1 ? "" : "s") + " — reload";
      banner.appendChild(reload);
    }
    newBranches.forEach((b) => {
      if (banner.childNodes.length) banner.appendChild(document.createTextNode(" · "));
      const link = document.createElement("a");
      link.href = reviewUrl(b.branch_id);
      link.className = "live-branch";
      link.textContent = "new branch " + b.branch_id + " (from turn " + b.turn + ")";
      banner.appendChild(link);
    });
    banner.hidden = !banner.childNodes.length;
  }

  const handlers = {
    turn_complete(msg) {
      if (msg.branch_id === branch) newTurns += 1;
      else if (!newBranches.some((b) => b.branch_id === msg.branch_id)) return;
      render();
    },
    branch_created(msg) {
      newBranches.push(msg);
      render();
    },
    live_status(msg) {
      resumed = paused && msg.live === true;
      paused = msg.live === false;
      render();
    },
  };

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + banner.dataset.wsPath);
    socket.addEventListener("open", () => { delay = 1000; banner.dataset.connected = "1"; });
    socket.addEventListener("message", (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (handlers[msg.type]) handlers[msg.type](msg);
    });
    socket.addEventListener("close", (event) => {
      banner.dataset.connected = "";
      if (event.code === 4401 || event.code === 4403) return;  // not allowed: stay quiet
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }

  connect();
})();
