// A copy button: <button data-copy-target="ID" data-copied="…" data-copy-failed="…"> copies the
// text of element ID (the one-time API key). Vanilla JS, loaded from 'self' (the CSP allows no
// inline script). The Clipboard API needs a secure context; elsewhere the text is selected and
// copied the older way, and if that fails too the person is asked to copy it themselves.
(function () {
  "use strict";

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copyBySelection(element) {
    selectText(element);
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function report(button, ok) {
    var status = document.getElementById("copy-status");
    if (status) {
      status.textContent = ok ? button.dataset.copied : button.dataset.copyFailed;
    }
  }

  function copy(button) {
    var target = document.getElementById(button.dataset.copyTarget);
    if (!target) {
      return;
    }
    var text = target.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () {
          report(button, true);
        },
        function () {
          report(button, copyBySelection(target));
        }
      );
    } else {
      report(button, copyBySelection(target));
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
      button.addEventListener("click", function () {
        copy(button);
      });
    });
  });
})();
