// Department files: drag-and-drop upload of several files with per-file progress, and the
// delete confirmation. Vanilla JS, no inline handlers (the CSP allows scripts from 'self' only).
// Each file goes in its own request, so one refusal (413/400 with a reason) never costs the others.
(function () {
  "use strict";

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function progressRow(list, file) {
    var item = document.createElement("li");
    var name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    var status = document.createElement("span");
    status.className = "status";
    item.appendChild(name);
    item.appendChild(bar);
    item.appendChild(status);
    list.appendChild(item);
    return { item: item, bar: bar, status: status };
  }

  function uploadOne(form, file, row) {
    return new Promise(function (resolve) {
      var data = new FormData();
      data.append("file", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
      xhr.setRequestHeader("Accept", "application/json");
      row.status.textContent = form.dataset.msgUploading;
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) {
          row.bar.value = Math.round((event.loaded / event.total) * 100);
        }
      });
      xhr.addEventListener("load", function () {
        var body = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch (e) {
          body = {};
        }
        var result = body.files && body.files.length ? body.files[0] : body;
        if (xhr.status === 200 && result.id) {
          row.bar.value = 100;
          row.item.className = "ok";
          row.status.textContent = result.deduplicated ? form.dataset.msgDuplicate : form.dataset.msgDone;
          resolve(true);
        } else {
          row.item.className = "error";
          row.status.textContent = form.dataset.msgFailed + ": " + (result.detail || body.detail || xhr.status);
          resolve(false);
        }
      });
      xhr.addEventListener("error", function () {
        row.item.className = "error";
        row.status.textContent = form.dataset.msgNetwork;
        resolve(false);
      });
      xhr.send(data);
    });
  }

  function uploadAll(form, files) {
    var list = document.getElementById("upload-progress");
    var rows = Array.prototype.map.call(files, function (file) {
      return progressRow(list, file);
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
    ["file-input", "camera-input"].forEach(function (id) {
      var input = document.getElementById(id);
      if (!input) {
        return;
      }
      input.addEventListener("change", function () {
        if (input.files.length) {
          uploadAll(form, input.files);
          input.value = "";
        }
      });
    });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("active");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.remove("active");
      });
    });
    zone.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) {
        uploadAll(form, event.dataTransfer.files);
      }
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
