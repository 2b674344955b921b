/* Ticket page: rate (1-5 stars) or withdraw through the API, then show the new state. */
(function () {
  "use strict";
  /* the session's CSRF token (web/csrf.py), needed only when a signed-in account acts here:
   * the ticket in the URL is a resident's credential, no cookie is */
  function csrfToken() {
    var m = document.cookie.match(/(?:^|;\s*)mq_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function post(form, body) {
    var error = document.getElementById("rate-error");
    return fetch(form.dataset.url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json",
                 "Accept-Language": document.documentElement.lang,
                 "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().then(function (b) {
        if (r.ok) { window.location.reload(); return; }
        if (error) error.textContent = b.error ? b.error.message : "HTTP " + r.status;
      });
    });
  }
  var rate = document.getElementById("rate");
  if (rate) {
    rate.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = new FormData(rate);
      post(rate, { rating: Number(data.get("rating")), comment: data.get("comment") || null });
    });
  }
  var withdraw = document.getElementById("withdraw");
  if (withdraw) {
    withdraw.addEventListener("submit", function (ev) {
      ev.preventDefault();
      post(withdraw, {});
    });
  }
})();
