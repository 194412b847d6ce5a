// The console's own behaviour, beside htmx and its SSE extension:
// - live regions ([data-live], each with sse-connect) close their stream while the tab
//   is hidden and open it again, from where they stopped, when it is shown; each time a
//   list's stream opens, the list is read once (what changed before it opened);
// - while a stream is down, [data-poll] regions are refreshed every POLL_MS instead
//   (and [data-poll="always"] ones regardless: data no notification announces);
// - a timeline's stream URL follows the last event it received, so any reconnect
//   resumes after it;
// - the task list's selected rows stay selected when the rows are refreshed;
// - the page signs out when the token expires (the server clears the cookie).
(function () {
  "use strict";
  var POLL_MS = 10000;
  var selected = new Set();

  function live() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
  }

  function streamUp(elt) {
    var source = elt._wbSource;
    return !!source && source.readyState === EventSource.OPEN;
  }

  // A stream just (re)opened: what changed before it did is read once, so nothing
  // between the page's rendering (or the last stream) and this one is missed.
  document.addEventListener("htmx:sseOpen", function (evt) {
    var elt = evt.detail.elt || evt.target;
    elt._wbSource = evt.detail.source;
    elt.setAttribute("data-stream", "open");
    if (elt.hasAttribute("data-poll") && !elt.hasAttribute("data-resume")) {
      htmx.trigger(elt, "wb:poll");
    }
  });
  document.addEventListener("htmx:sseError", function (evt) {
    var elt = evt.detail.elt || evt.target;
    if (elt && elt.setAttribute) elt.setAttribute("data-stream", "down");
  });

  // Keep ?after_seq= on the stream URL at the last event received.
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    var id = evt.detail && evt.detail.lastEventId;
    var region = evt.target.closest("[data-live]");
    if (!id || !region || !region.hasAttribute("data-resume")) return;
    var url = new URL(region.getAttribute("sse-connect"), location.href);
    url.searchParams.set("after_seq", id);
    region.setAttribute("sse-connect", url.pathname + url.search);
  });

  function pause() {
    live().forEach(function (elt) {
      if (elt._wbSource) elt._wbSource.close();
      elt._wbSource = null;
      elt.setAttribute("data-stream", "paused");
      elt.setAttribute("data-paused-url", elt.getAttribute("sse-connect"));
      elt.removeAttribute("sse-connect");
      htmx.process(elt);
    });
  }

  function resume() {
    live().forEach(function (elt) {
      var url = elt.getAttribute("data-paused-url");
      if (!url) return;
      elt.removeAttribute("data-paused-url");
      // Listeners registered on the old stream belong to it: a changed attribute makes
      // htmx set each of them up again on the new one.
      var generation = String(Date.now());
      elt.querySelectorAll("[sse-swap], [hx-trigger]").forEach(function (child) {
        child.setAttribute("data-wb-gen", generation);
      });
      elt.setAttribute("sse-connect", url);
      htmx.process(elt);
    });
  }

  // The polling fallback: refresh the regions that follow the streams while one is down,
  // and those that show what no notification announces (heartbeats) always.
  function refresh() {
    var streamsUp = live().every(streamUp);
    document.querySelectorAll("[data-poll]").forEach(function (elt) {
      if (!streamsUp || elt.getAttribute("data-poll") === "always") {
        htmx.trigger(elt, "wb:poll");
      }
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") pause();
    else resume();
  });

  setInterval(function () {
    if (document.visibilityState === "visible") refresh();
  }, POLL_MS);

  // Selected rows of the task list survive the live refresh of the rows.
  document.addEventListener("change", function (evt) {
    var box = evt.target;
    if (!box.matches || !box.matches("input[data-select]")) return;
    if (box.checked) selected.add(box.value);
    else selected.delete(box.value);
  });
  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll("input[data-select]").forEach(function (box) {
      box.checked = selected.has(box.value);
    });
  });

  // Sign out when the token expires (the cookie expires with it): to the sign-in page,
  // which says why and comes back here afterwards.
  var expires = Number(document.body.getAttribute("data-expires-at") || 0);
  var wait = expires * 1000 - Date.now() + 500;
  if (expires && wait < 2147483647) {
    setTimeout(function () {
      var here = location.pathname + location.search;
      location.assign(document.body.getAttribute("data-sign-in") + "?expired=1&next=" +
        encodeURIComponent(here));
    }, Math.max(wait, 0));
  }
})();
