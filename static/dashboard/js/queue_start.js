/* The review queue's start page (/review/): open the next session at once. The form POSTs to
   /review/next/, which claims the session (a GET never writes); without scripts, Enter (the
   button has the focus) does the same. Not again when the page comes back from the history
   cache (Back from a session): then the button waits. */
(function () {
  "use strict";
  var form = document.getElementById("queue-start-form");
  if (!form) return;
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted && form.requestSubmit) form.requestSubmit();
  });
})();
