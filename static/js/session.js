// The idle warning (IA-2): shortly before an idle session ends — min(60 s, half the idle limit)
// before, as the server says — a box offers "keep me signed in". Looking at the session is a
// background request and never extends it (accounts/activity.py); only the button does. Activity
// in another tab or a chat turn moves the end, so the end is asked again rather than guessed.
// No inline script (CSP script-src 'self'): URLs and texts come from the box's data-* attributes.
(function () {
  "use strict";

  var box = document.getElementById("session-warning");
  if (!box) {
    return;
  }
  var warningText = document.getElementById("session-warning-text");
  var countdown = document.getElementById("session-countdown");
  var keepForm = document.getElementById("session-keep-form");
  var endedText = document.getElementById("session-ended-text");
  var signIn = document.getElementById("session-sign-in");
  var RECHECK_WHILE_WARNING_MS = 5000;
  var state = { timer: null, ticker: null, deadline: null, ended: false };

  function schedule(milliseconds) {
    window.clearTimeout(state.timer);
    state.timer = window.setTimeout(check, Math.max(500, milliseconds));
  }

  function showCountdown() {
    var seconds = Math.max(0, Math.ceil((state.deadline - Date.now()) / 1000));
    countdown.textContent = box.dataset.countdown.replace("{seconds}", String(seconds));
  }

  function hideWarning() {
    box.hidden = true;
    window.clearInterval(state.ticker);
    state.ticker = null;
  }

  function showWarning() {
    showCountdown();
    if (!state.ticker) {
      state.ticker = window.setInterval(showCountdown, 1000);
    }
    box.hidden = false;
  }

  function end() {
    if (state.ended) {
      return;
    }
    state.ended = true;
    window.clearTimeout(state.timer);
    window.clearInterval(state.ticker);
    warningText.hidden = true;
    keepForm.hidden = true;
    endedText.hidden = false;
    signIn.href = box.dataset.loginUrl + "?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    box.hidden = false;
    document.dispatchEvent(new CustomEvent("platform:session-ended"));
  }

  function apply(data) {
    if (!data || !data.signed_in) {
      end();
      return;
    }
    var remainingMs = data.idle_remaining_seconds * 1000;
    var warnMs = data.warn_seconds * 1000;
    state.deadline = Date.now() + remainingMs;
    if (remainingMs > warnMs) {
      hideWarning();
      schedule(remainingMs - warnMs);
    } else {
      showWarning();
      // Look again soon (another tab may have been used) and just after the end, which the
      // server then confirms by answering signed_in: false.
      schedule(Math.min(RECHECK_WHILE_WARNING_MS, remainingMs + 500));
    }
  }

  function request(method, url, body) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Accept", "application/json");
    if (body) {
      xhr.setRequestHeader("X-CSRFToken", body.get("csrfmiddlewaretoken") || "");
    }
    xhr.addEventListener("load", function () {
      var data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (e) {
        data = null;
      }
      if (xhr.status === 200 && data) {
        apply(data);
      } else if (xhr.status === 200 || xhr.status === 401 || xhr.status === 403) {
        end(); // a login page instead of JSON: signed out
      } else {
        schedule(RECHECK_WHILE_WARNING_MS); // the server is briefly unavailable: ask again
      }
    });
    xhr.addEventListener("error", function () {
      schedule(RECHECK_WHILE_WARNING_MS);
    });
    xhr.send(body || null);
  }

  function check() {
    if (!state.ended) {
      request("GET", box.dataset.stateUrl);
    }
  }

  keepForm.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!state.ended) {
      request("POST", box.dataset.keepUrl, new FormData(keepForm));
    }
  });

  check();
})();
