// Department files: drag-and-drop upload of several files with per-file progress, and the
// delete confirmation. Vanilla JS, no inline handlers (the CSP allows scripts from 'self' only).
// Each file goes in its own request, so one refusal (413/400 with a reason) never costs the others.
(function () {
  "use strict";

  var uploads = window.PortalUploads;

  function uploadOne(form, file, row) {
    return uploads.sendWithRow(form.action, file, uploads.csrfToken(form), row, form.dataset).then(function (result) {
      return Boolean(result);
    });
  }

  function uploadAll(form, files) {
    var list = document.getElementById("upload-progress");
    var rows = Array.prototype.map.call(files, function (file) {
      return uploads.progressRow(list, file);
    });
    var stored = 0;
    var chain = Promise.resolve();
    Array.prototype.forEach.call(files, function (file, index) {
      chain = chain.then(function () {
        return uploadOne(form, file, rows[index]).then(function (ok) {
          if (ok) {
            stored += 1;
          }
        });
      });
    });
    chain.then(function () {
      if (stored) {
        // The list is rendered by the server: reload it once everything is done.
        window.setTimeout(function () {
          window.location.reload();
        }, 1200);
      }
    });
  }

  function setUpUpload() {
    var form = document.getElementById("upload-form");
    if (!form) {
      return;
    }
    var zone = document.getElementById("drop-zone");
    // The file chooser, and on phones the camera: both upload what they were given.
    uploads.dropZone(zone, ["file-input", "camera-input"], function (files) {
      uploadAll(form, files);
    });
  }

  function setUpDeleteConfirmation() {
    document.querySelectorAll("form.delete-form").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) {
          event.preventDefault();
        }
      });
    });
  }

  // Text layer progress: while a file's text is waiting or being read, ask the status endpoint
  // every 2 s (a background poll: it never keeps the session alive) and show its label. The
  // detail page reloads once the text is ready, to show it.
  function setUpTextLayerProgress() {
    var cells = Array.prototype.slice.call(document.querySelectorAll("[data-text-layer]"));
    var unfinished = function () {
      return cells.filter(function (cell) {
        return cell.dataset.status === "pending" || cell.dataset.status === "running";
      });
    };
    if (!unfinished().length) {
      return;
    }
    var url = cells[0].dataset.textStatusUrl;
    function poll() {
      var waiting = unfinished();
      if (!waiting.length) {
        return;
      }
      var query = waiting.map(function (cell) {
        return "id=" + encodeURIComponent(cell.dataset.textLayer);
      }).join("&");
      fetch(url + "?" + query, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          return response.ok ? response.json() : { files: {} };
        })
        .then(function (data) {
          waiting.forEach(function (cell) {
            var status = data.files[cell.dataset.textLayer];
            if (!status) {
              return;
            }
            cell.dataset.status = status.status;
            cell.textContent = status.label;
            if (status.status === "done" && cell.dataset.reloadWhenDone) {
              window.location.reload();
            }
          });
        })
        .catch(function () {})
        .then(function () {
          window.setTimeout(poll, 2000);
        });
    }
    window.setTimeout(poll, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpUpload();
    setUpDeleteConfirmation();
    setUpTextLayerProgress();
  });
})();
