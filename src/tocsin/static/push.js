/* tocsin browser push, without dependencies. A button with data-push-area="CODE",
   data-push-key (the VAPID public key, base64url) and data-push-url (where subscriptions are
   POSTed) subscribes this browser to level changes of that area: it registers the service
   worker /sw.js, subscribes with the key, and POSTs
   {"endpoint", "keys": {"p256dh", "auth"}, "areas": [CODE], "language"} to data-push-url.
   The outcome goes to the [data-push-status] element (aria-live) of the button's form; the
   words come from the button's data-push-done, data-push-denied and data-push-failed.
   Where the browser cannot push, the form stays hidden. The click is delegated and the forms
   are checked again when the page changes, because live.js swaps the content of <main>. */
(function () {
  "use strict";
  var supported = "serviceWorker" in navigator && "PushManager" in window &&
    "Notification" in window && !!window.fetch;
  var fallback = {
    done: "Subscribed: this browser will show a notification when the level here changes.",
    denied: "Notifications are blocked for this site; allow them in the browser's settings.",
    failed: "Could not subscribe. Try again later."
  };

  function blockOf(button) {
    return button.form || button;
  }

  function reveal() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-push-area]"), function (b) {
      var block = blockOf(b);
      if (block.hidden === supported) {
        block.hidden = !supported;
      }
    });
  }

  function words(button, name) {
    return button.getAttribute("data-push-" + name) || fallback[name];
  }

  function say(button, message) {
    var status = blockOf(button).querySelector("[data-push-status]");
    if (!status) {
      return;
    }
    status.textContent = "";
    window.setTimeout(function () {
      status.textContent = message; // changed after a pause, so that it is announced again
    }, 100);
  }

  function keyBytes(base64url) {
    var text = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var raw = window.atob(text + "===".slice((text.length + 3) % 4));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) {
      out[i] = raw.charCodeAt(i);
    }
    return out;
  }

  function subscription(registration, key) {
    var options = { userVisibleOnly: true, applicationServerKey: key };
    return registration.pushManager.subscribe(options).catch(function (error) {
      if (!error || error.name !== "InvalidStateError") {
        throw error;
      }
      // Subscribed before with another key (the server's key was replaced): start again.
      return registration.pushManager.getSubscription().then(function (old) {
        return old ? old.unsubscribe() : true;
      }).then(function () {
        return registration.pushManager.subscribe(options);
      });
    });
  }

  // The API's refusal, {"error": {"status", "code", "message", "fix"}}, as one sentence.
  function problem(button, response) {
    return response.json().then(function (body) {
      var error = body && body.error;
      if (!error || !error.message) {
        throw new Error("no error message");
      }
      return error.fix ? error.message + " (" + error.fix + ")" : error.message;
    }).catch(function () {
      return words(button, "failed") + " (HTTP " + response.status + ")";
    });
  }

  function subscribe(button) {
    button.disabled = true;
    navigator.serviceWorker.register("/sw.js", { scope: "/" })
      .then(function () {
        return navigator.serviceWorker.ready;
      })
      .then(function (registration) {
        return subscription(registration, keyBytes(button.getAttribute("data-push-key")));
      })
      .then(function (granted) {
        var json = granted.toJSON();
        return fetch(button.getAttribute("data-push-url"), {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({
            endpoint: json.endpoint,
            keys: { p256dh: json.keys.p256dh, auth: json.keys.auth },
            areas: [button.getAttribute("data-push-area")],
            language: document.documentElement.lang
          })
        });
      })
      .then(function (response) {
        if (response.ok) {
          say(button, words(button, "done"));
          return;
        }
        return problem(button, response).then(function (message) {
          button.disabled = false;
          say(button, message);
        });
      })
      .catch(function (error) {
        button.disabled = false;
        say(button, words(button, error && error.name === "NotAllowedError" ? "denied" : "failed"));
      });
  }

  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ?
      event.target.closest("[data-push-area]") : null;
    if (!button || !supported || button.disabled) {
      return;
    }
    event.preventDefault();
    subscribe(button);
  });

  reveal();
  if (window.MutationObserver) {
    new MutationObserver(reveal).observe(document.querySelector("main") || document.body,
      { childList: true, subtree: true });
  }
})();
