// The admin dashboard refreshes its figures and charts in place (the server renders them).
(function () {
  "use strict";
  var live = document.getElementById("glisk-live");
  if (!live) return;
  var every = Number(live.dataset.every || 10) * 1000;
  var stamp = document.getElementById("glisk-refreshed");
  function refresh() {
    fetch(live.dataset.url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        // A session that expired answers with the login page, after a redirect: not figures.
        if (response.redirected) throw new Error("signed out: reload the page to sign in");
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        if (stamp) stamp.textContent = "Refreshed at " + new Date().toISOString().slice(11, 19) + " UTC; every " + every / 1000 + " s.";
      })
      .catch(function (error) {
        if (stamp) stamp.textContent = "Could not refresh (" + error.message + "); trying again in " + every / 1000 + " s.";
      });
  }
  setInterval(refresh, every);
})();
