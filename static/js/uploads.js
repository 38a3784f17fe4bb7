// Shared upload pieces for the department files (assets.js), the extraction page (extraction.js)
// and the chat composer (chat.js): the CSRF token, a progress row, one file's XHR upload, and a
// drop zone with its file inputs. Load it before those scripts (deferred scripts run in document
// order). Vanilla JS, no inline handlers (the CSP allows scripts from 'self' only); the texts
// always come from the page (data-* attributes), never from here.
(function () {
  "use strict";

  // The token of the form below scope (an element, or the document when none is given).
  function csrfToken(scope) {
    var input = (scope || document).querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // One <li> with the file's name, a progress bar and a status line, appended to list.
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

  // POST one file (field "file") to url. handlers, all optional: onProgress(percent) while it
  // goes up, onDone(result) when the server stored it (200 with an id), onFail(detail) when it
  // refused it (its reason, else the HTTP status), onNetwork() when no answer came.
  function send(url, file, token, handlers) {
    var data = new FormData();
    data.append("file", file, file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable && handlers.onProgress) {
        handlers.onProgress(Math.round((event.loaded / event.total) * 100));
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
        if (handlers.onDone) {
          handlers.onDone(result);
        }
      } else if (handlers.onFail) {
        handlers.onFail(result.detail || body.detail || xhr.status);
      }
    });
    xhr.addEventListener("error", function () {
      if (handlers.onNetwork) {
        handlers.onNetwork();
      }
    });
    xhr.send(data);
  }

  // send() with its progress shown in row (from progressRow). texts: the page's data-* set
  // (msgUploading, msgDone, msgDuplicate, msgFailed, msgNetwork). Resolves to the stored file's
  // result, or null when it was refused or lost.
  function sendWithRow(url, file, token, row, texts) {
    return new Promise(function (resolve) {
      row.status.textContent = texts.msgUploading;
      send(url, file, token, {
        onProgress: function (percent) {
          row.bar.value = percent;
        },
        onDone: function (result) {
          row.bar.value = 100;
          row.item.className = "ok";
          row.status.textContent = result.deduplicated ? texts.msgDuplicate : texts.msgDone;
          resolve(result);
        },
        onFail: function (detail) {
          row.item.className = "error";
          row.status.textContent = texts.msgFailed + ": " + detail;
          resolve(null);
        },
        onNetwork: function () {
          row.item.className = "error";
          row.status.textContent = texts.msgNetwork;
          resolve(null);
        }
      });
    });
  }

  // Files dropped on zone, or chosen in one of the inputs named by inputIds (the file chooser
  // and, on phones, the camera), go to onFiles(files); the zone is "active" while dragged over.
  function dropZone(zone, inputIds, onFiles) {
    inputIds.forEach(function (id) {
      var input = document.getElementById(id);
      if (!input) {
        return;
      }
      input.addEventListener("change", function () {
        if (input.files.length) {
          var files = Array.prototype.slice.call(input.files);
          input.value = "";
          onFiles(files);
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
        onFiles(event.dataTransfer.files);
      }
    });
  }

  window.PortalUploads = {
    csrfToken: csrfToken,
    progressRow: progressRow,
    send: send,
    sendWithRow: sendWithRow,
    dropZone: dropZone
  };
})();
