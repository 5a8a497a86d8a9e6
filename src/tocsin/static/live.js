/* tocsin live updates, without dependencies. On a live page (<main data-live="true">, not a
   time-travel page) it listens to /events; on each "levels" event it fetches this page again,
   swaps in the new <main> content and announces the change in the aria-live region.
   EventSource reconnects by itself. Without JavaScript the page simply does not update. */
(function () {
  "use strict";
  var main = document.querySelector("main[data-live='true']");
  if (!main || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var status = document.getElementById("live-status");
  var busy = false;
  var again = false;

  function typing() {
    var active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  function announce() {
    if (!status) {
      return;
    }
    status.textContent = "";
    window.setTimeout(function () {
      status.textContent = status.getAttribute("data-message") || "Level updated";
    }, 100);
  }

  // Maps and badges keep their address when a level changes: fetch them past the cache,
  // then point the images at them again.
  function refreshImages() {
    Array.prototype.forEach.call(main.querySelectorAll("img[src]"), function (img) {
      var src = img.getAttribute("src");
      fetch(src, { cache: "reload" }).then(function () {
        img.removeAttribute("src");
        img.setAttribute("src", src);
      }).catch(function () {});
    });
  }

  function done() {
    busy = false;
    if (again) {
      again = false;
      refresh();
    }
  }

  function refresh() {
    if (busy || typing()) {
      again = true; // try again when the fetch ends or the reader leaves the form
      return;
    }
    busy = true;
    fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.querySelector("main");
        if (fresh) {
          main.innerHTML = fresh.innerHTML;
          refreshImages();
          if (page.title) {
            document.title = page.title;
          }
          announce();
        }
      })
      .catch(function () { /* keep the page as it is; the next event tries again */ })
      .then(done, done);
  }

  main.addEventListener("focusout", function () {
    window.setTimeout(function () {
      if (again && !busy && !typing()) {
        again = false;
        refresh();
      }
    }, 0);
  });

  var source = new EventSource("/events");
  source.addEventListener("levels", function (event) {
    try {
      var data = JSON.parse(event.data);
      if (!data || typeof data.version !== "number") {
        return;
      }
    } catch (error) {
      return;
    }
    refresh();
  });
})();
