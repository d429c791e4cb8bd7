/* Forkview page behaviour (no build step, no dependencies).
   - j / k: next / previous turn (focus + scroll; the URL hash follows)
   - [ / ]: previous / next sibling branch (the switcher of the focused turn, else the nearest above)
   - "Load earlier turns": fetches the fragment and prepends it, without a reload. */
(function () {
  "use strict";

  function turns() { return Array.prototype.slice.call(document.querySelectorAll("article.turn, .compare-row.turn")); }

  function currentIndex(list) {
    var active = document.activeElement && document.activeElement.closest ? document.activeElement.closest(".turn") : null;
    if (active) return list.indexOf(active);
    if (location.hash) {
      var byHash = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (byHash) return list.indexOf(byHash);
    }
    var top = 80;
    for (var i = 0; i < list.length; i++) { if (list[i].getBoundingClientRect().bottom > top) return i - 1 < -1 ? -1 : i - 1; }
    return list.length - 1;
  }

  function focusTurn(el) {
    if (!el) return;
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "start" });
    if (el.id && history.replaceState) history.replaceState(null, "", "#" + el.id);
    document.body.dataset.focusedTurn = el.dataset.turn || "";
  }

  function switcherFor(list, index) {
    for (var i = Math.max(index, 0); i >= 0 && i < list.length; i--) {
      var sw = list[i].querySelector(".branch-switcher");
      if (sw) return sw;
    }
    return document.querySelector(".branch-switcher");
  }

  function typing(event) {
    var t = event.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
    var list = turns();
    if (!list.length) return;
    var index = currentIndex(list);
    if (event.key === "j") {
      focusTurn(list[Math.min(index + 1, list.length - 1)]);
      event.preventDefault();
    } else if (event.key === "k") {
      focusTurn(list[Math.max(index - 1, 0)]);
      event.preventDefault();
    } else if (event.key === "[" || event.key === "]") {
      var sw = switcherFor(list, index);
      var link = sw && sw.querySelector(event.key === "[" ? "a.switch-prev" : "a.switch-next");
      if (link) { event.preventDefault(); location.href = link.href; }
    }
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("#load-earlier");
    if (!link || !link.dataset.fragmentUrl || !window.fetch) return;
    event.preventDefault();
    link.setAttribute("aria-busy", "true");
    fetch(link.dataset.fragmentUrl, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("turn-list");
        var list = document.getElementById("turn-list");
        if (!fresh || !list) throw new Error("fragment");
        var anchor = link.closest(".load-earlier");
        var later = fresh.querySelector(".load-later");
        if (later) later.remove();
        var first = list.querySelector("article.turn");
        var nodes = Array.prototype.slice.call(fresh.childNodes);
        nodes.forEach(function (node) { list.insertBefore(document.importNode(node, true), anchor); });
        anchor.remove();
        list.dataset.first = fresh.dataset.first;
        if (first) first.scrollIntoView({ block: "start" });
      })
      .catch(function () { location.href = link.href; });
  });
})();
