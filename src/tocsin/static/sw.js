/* tocsin service worker, served at /sw.js (scope /). Each push from tocsin is JSON,
   {"title", "body", "url", "tag", "changes"}: it is shown as a notification (a newer one with
   the same tag replaces it), and a click on it opens the page it names. */
"use strict";

self.addEventListener("install", function () {
  self.skipWaiting();
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

// Only pages of the web (never javascript: or data: addresses) are opened.
function pageOf(url) {
  try {
    var page = new URL(url, self.location.origin);
    return page.protocol === "https:" || page.protocol === "http:" ? page.href : "/";
  } catch (error) {
    return "/";
  }
}

self.addEventListener("push", function (event) {
  var message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch (error) {
    message = {};
  }
  var options = { body: message.body || "", data: { url: pageOf(message.url || "/") } };
  if (message.tag) {
    options.tag = message.tag;
  }
  // Every push shows a notification: browsers revoke subscriptions that push silently.
  event.waitUntil(self.registration.showNotification(message.title || self.location.host,
                                                     options));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = pageOf((event.notification.data && event.notification.data.url) || "/");
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true })
    .then(function (windows) {
      for (var i = 0; i < windows.length; i += 1) {
        if (windows[i].url === url && "focus" in windows[i]) {
          return windows[i].focus();
        }
      }
      return self.clients.openWindow(url);
    }));
});
