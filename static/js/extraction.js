// The portal's extraction pages (templates/inference/extraction*.html, batch.html): upload new
// files with progress into the file grid, place each field's box over its page image, prefill a
// correction, and follow a batch's progress. Vanilla JS, no inline handlers (CSP: scripts from
// 'self' only; boxes are placed through the style object, which the CSP allows).
(function () {
  "use strict";

  var uploads = window.PortalUploads;

  // --- the extraction page: uploads ---------------------------------------------------------------

  function addToGrid(zone, stored) {
    var grid = document.getElementById("file-grid");
    var empty = document.getElementById("no-files");
    if (empty) {
      empty.remove();
    }
    var existing = grid.querySelector('input[name=assets][value="' + stored.id + '"]');
    if (existing) {
      existing.checked = true;
      return;
    }
    var item = document.createElement("li");
    var label = document.createElement("label");
    label.className = "file-choice";
    var box = document.createElement("input");
    box.type = "checkbox";
    box.name = "assets";
    box.value = stored.id;
    box.checked = true;
    var image = document.createElement("img");
    image.className = "thumb";
    image.alt = "";
    image.src = zone.dataset.thumbUrl.replace("00000000-0000-0000-0000-000000000000", stored.id);
    var name = document.createElement("span");
    name.className = "file-name";
    name.textContent = stored.name;
    label.appendChild(box);
    label.appendChild(image);
    label.appendChild(name);
    item.appendChild(label);
    grid.insertBefore(item, grid.firstChild);
  }

  function uploadOne(zone, file, row) {
    var token = uploads.csrfToken(document);
    return uploads.sendWithRow(zone.dataset.uploadUrl, file, token, row, zone.dataset).then(function (result) {
      if (result) {
        addToGrid(zone, { id: result.id, name: result.name || file.name });
      }
    });
  }

  function uploadAll(zone, files) {
    var list = document.getElementById("extract-upload-progress");
    var chain = Promise.resolve();
    Array.prototype.forEach.call(files, function (file) {
      var row = uploads.progressRow(list, file);
      chain = chain.then(function () {
        return uploadOne(zone, file, row);
      });
    });
    return chain;
  }

  function setUpExtractPage() {
    var form = document.getElementById("extract-form");
    if (!form) {
      return;
    }
    var zone = document.getElementById("extract-upload");
    if (zone) {
      uploads.dropZone(zone, ["extract-file-input", "extract-camera-input"], function (files) {
        uploadAll(zone, files);
      });
    }
    form.addEventListener("submit", function () {
      var note = document.getElementById("busy-note");
      if (note) {
        note.hidden = false;
      }
    });
  }

  // --- a result: boxes and corrections -----------------------------------------------------------

  function setUpResultPage() {
    document.querySelectorAll(".field-box").forEach(function (box) {
      box.style.left = box.dataset.left + "%";
      box.style.top = box.dataset.top + "%";
      box.style.width = box.dataset.width + "%";
      box.style.height = box.dataset.height + "%";
    });
    document.querySelectorAll("[data-box-field]").forEach(function (link) {
      link.addEventListener("click", function () {
        document.querySelectorAll(".field-box").forEach(function (box) {
          box.classList.toggle("active", box.dataset.field === link.dataset.boxField);
        });
      });
    });
    var form = document.getElementById("correction-form");
    if (!form) {
      return;
    }
    document.querySelectorAll("button.edit-field").forEach(function (button) {
      button.addEventListener("click", function () {
        form.querySelector("select[name=field_path]").value = button.dataset.field;
        var value = form.querySelector("[name=value]");
        value.value = button.dataset.value;
        form.scrollIntoView({ behavior: "smooth", block: "center" });
        value.focus();
      });
    });
  }

  // --- a batch: progress -------------------------------------------------------------------------

  function statusCell(file) {
    var badge = document.createElement("span");
    badge.className = "badge status-" + file.status;
    badge.textContent = file.label;
    badge.title = file.title;
    return badge;
  }

  function renderBatch(state) {
    document.getElementById("batch-status").textContent = state.label;
    document.getElementById("batch-count").textContent = state.processed + "/" + state.total;
    document.getElementById("batch-valid").textContent = state.succeeded;
    document.getElementById("batch-failed").textContent = state.failed;
    var bar = document.getElementById("batch-progress");
    bar.max = state.total;
    bar.value = state.processed;
    var error = document.getElementById("batch-error");
    error.textContent = state.error;
    error.hidden = !state.error;
    state.files.forEach(function (file) {
      var row = document.querySelector('#batch-files tr[data-file="' + file.id + '"]');
      if (!row) {
        return;
      }
      var cells = row.querySelectorAll("td");
      cells[0].textContent = "";
      if (file.url) {
        var link = document.createElement("a");
        link.href = file.url;
        link.textContent = file.name;
        cells[0].appendChild(link);
      } else {
        cells[0].textContent = file.name;
      }
      cells[1].textContent = "";
      cells[1].appendChild(statusCell(file));
      cells[2].textContent = file.flags.join(", ");
    });
    if (state.finished) {
      var cancel = document.getElementById("batch-cancel");
      if (cancel) {
        cancel.remove();
      }
    }
  }

  function setUpBatchPage() {
    var panel = document.getElementById("batch");
    if (!panel || panel.dataset.finished === "true") {
      return;
    }
    var note = document.getElementById("batch-note");
    function poll() {
      fetch(panel.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) {
            throw new Error(String(response.status));
          }
          return response.json();
        })
        .then(function (state) {
          note.textContent = "";
          renderBatch(state);
          if (!state.finished) {
            window.setTimeout(poll, 1000);
          }
        })
        .catch(function () {
          note.textContent = panel.dataset.msgOffline;
          window.setTimeout(poll, 3000);
        });
    }
    window.setTimeout(poll, 500);
  }

  // --- the template editor's rules ---------------------------------------------------------------

  function setUpRulesEditor() {
    var editor = document.getElementById("rules-editor");
    if (!editor) {
      return;
    }
    var rows = document.getElementById("rule-rows");
    var template = document.getElementById("rule-row-template");
    editor.addEventListener("click", function (event) {
      if (event.target.classList.contains("rule-remove")) {
        event.target.closest("tr").remove();
      }
    });
    document.getElementById("rule-add").addEventListener("click", function () {
      var row = template.content.firstElementChild.cloneNode(true);
      rows.appendChild(row);
      row.querySelector("input").focus();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpRulesEditor();
    setUpExtractPage();
    setUpResultPage();
    setUpBatchPage();
  });
})();
