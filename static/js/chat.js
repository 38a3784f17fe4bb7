// The department chat: websocket protocol v1 (docs/chat.md), streamed answers rendered as a small
// Markdown subset, uploads and file picking, stop, parameters, and the status panel.
// No inline script anywhere (CSP script-src 'self'): settings come from data-* attributes and the
// translated texts from a json_script block. Model output is NEVER put into innerHTML unescaped:
// it is HTML-escaped first, and only fixed tags without attributes are added afterwards.
(function () {
  "use strict";

  var root = document.getElementById("chat-root");
  if (!root) {
    return;
  }
  var texts = JSON.parse(document.getElementById("chat-texts").textContent);
  var pane = document.getElementById("messages");
  var composer = document.getElementById("composer");
  var promptBox = document.getElementById("prompt");
  var sendButton = document.getElementById("send");
  var stopButton = document.getElementById("stop");
  var notice = document.getElementById("chat-notice");
  var pending = document.getElementById("pending-attachments");
  var fileInput = document.getElementById("file-input");
  var temperature = document.getElementById("temperature");
  var temperatureValue = document.getElementById("temperature-value");
  var maxTokens = document.getElementById("max-tokens");
  var conversationList = document.getElementById("conversation-list");
  var connectionLine = document.getElementById("st-connection");
  var maxAssets = parseInt(root.dataset.maxAssets, 10) || 8;

  var state = {
    socket: null,
    conversation: root.dataset.conversation ? parseInt(root.dataset.conversation, 10) : null,
    attachments: [], // {id, name, thumbnail}
    turn: null, // {body, text, started, refs}
    retryDelay: 1000,
    closedForGood: false,
    refCounter: 0,
    template: "", // the chosen task template's slug, sent with the next question
  };

  function format(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : whole;
    });
  }

  function say(message, isError) {
    notice.textContent = message || "";
    notice.className = "notice" + (isError ? " error" : "");
  }

  // --- Markdown, safely ------------------------------------------------------------------------
  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&#39;");
  }

  function inline(escaped) {
    // Input is already escaped; these only wrap text in fixed, attribute-free tags.
    return escaped
      .replace(/`([^`\n]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\n]+)\*(?!\*)/g, "$1<em>$2</em>");
  }

  function renderMarkdown(source) {
    var parts = String(source).split(/```/);
    var html = [];
    parts.forEach(function (part, index) {
      if (index % 2 === 1) {
        var code = part.replace(/^[\w+-]*\n/, "");
        html.push("<pre><code>" + escapeHtml(code) + "</code></pre>");
        return;
      }
      var list = null;
      var paragraph = [];
      function flushParagraph() {
        if (paragraph.length) {
          html.push("<p>" + paragraph.join("<br>") + "</p>");
          paragraph = [];
        }
      }
      function flushList() {
        if (list) {
          html.push("<" + list.tag + ">" + list.items.join("") + "</" + list.tag + ">");
          list = null;
        }
      }
      part.split("\n").forEach(function (line) {
        var heading = /^(#{1,4})\s+(.*)$/.exec(line);
        var bullet = /^\s*[-*]\s+(.*)$/.exec(line);
        var numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
        if (heading) {
          flushParagraph();
          flushList();
          var level = Math.min(heading[1].length + 2, 6);
          html.push("<h" + level + ">" + inline(escapeHtml(heading[2])) + "</h" + level + ">");
        } else if (bullet || numbered) {
          flushParagraph();
          var tag = bullet ? "ul" : "ol";
          if (!list || list.tag !== tag) {
            flushList();
            list = { tag: tag, items: [] };
          }
          list.items.push("<li>" + inline(escapeHtml((bullet || numbered)[1])) + "</li>");
        } else if (!line.trim()) {
          flushParagraph();
          flushList();
        } else {
          flushList();
          paragraph.push(inline(escapeHtml(line)));
        }
      });
      flushParagraph();
      flushList();
    });
    return html.join("");
  }

  function showMarkdown(element, source) {
    element.innerHTML = renderMarkdown(source); // escaped inside renderMarkdown
  }

  Array.prototype.forEach.call(pane.querySelectorAll("[data-markdown]"), function (element) {
    showMarkdown(element, element.textContent);
  });

  function scrollDown() {
    pane.scrollTop = pane.scrollHeight;
  }
  scrollDown();

  // --- messages in the pane ----------------------------------------------------------------------
  function addMessage(role, text, attachments) {
    var hint = document.getElementById("empty-hint");
    if (hint) {
      hint.remove();
    }
    var article = document.createElement("article");
    article.className = "msg msg-" + role;
    if (attachments && attachments.length) {
      var row = document.createElement("div");
      row.className = "attachments";
      attachments.forEach(function (item) {
        var img = document.createElement("img");
        img.className = "thumb";
        img.alt = item.name;
        img.src = item.thumbnail;
        row.appendChild(img);
      });
      article.appendChild(row);
    }
    var body = document.createElement("div");
    body.className = "msg-body";
    body.textContent = text;
    article.appendChild(body);
    pane.appendChild(article);
    scrollDown();
    return { article: article, body: body };
  }

  function addStatus(article, text, className) {
    var line = document.createElement("div");
    line.className = className || "msg-status";
    line.textContent = text;
    article.appendChild(line);
    return line;
  }

  // --- attachments -------------------------------------------------------------------------------
  function thumbnailUrl(id) {
    return root.dataset.thumbnailUrl.replace("00000000-0000-0000-0000-000000000000", id);
  }

  // The document pages an answer drew on (the done frame's usage.pages): a thumbnail each,
  // opening the page larger. Built with DOM calls only, like every other text here.
  var UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  function showPages(article, pages) {
    if (!Array.isArray(pages) || !pages.length) {
      return;
    }
    var strip = document.createElement("div");
    strip.className = "attachments msg-pages";
    strip.title = root.dataset.pagesLabel;
    pages.forEach(function (ref) {
      if (!ref || !UUID.test(String(ref.asset)) || !Number.isInteger(ref.page)) {
        return;
      }
      var url = thumbnailUrl(ref.asset) + "?page=" + ref.page;
      var link = document.createElement("a");
      link.href = url + "&size=large";
      link.target = "_blank";
      link.rel = "noopener";
      var img = document.createElement("img");
      img.className = "thumb";
      img.loading = "lazy";
      img.alt = format(root.dataset.pageLabel, { page: ref.page });
      img.src = url;
      link.appendChild(img);
      strip.appendChild(link);
    });
    article.appendChild(strip);
  }

  function renderAttachments() {
    pending.textContent = "";
    state.attachments.forEach(function (item, index) {
      var chip = document.createElement("span");
      chip.className = "attachment";
      var img = document.createElement("img");
      img.src = item.thumbnail;
      img.alt = item.name;
      var name = document.createElement("span");
      name.textContent = item.name;
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = "×";
      remove.title = texts.remove;
      remove.addEventListener("click", function () {
        state.attachments.splice(index, 1);
        renderAttachments();
      });
      chip.appendChild(img);
      chip.appendChild(name);
      chip.appendChild(remove);
      pending.appendChild(chip);
    });
  }

  function attach(id, name) {
    if (state.attachments.some(function (item) { return item.id === id; })) {
      return;
    }
    if (state.attachments.length >= maxAssets) {
      say(format(texts.too_many_files, { limit: maxAssets }), true);
      return;
    }
    state.attachments.push({ id: id, name: name, thumbnail: thumbnailUrl(id) });
    renderAttachments();
  }

  function upload(file) {
    say(format(texts.uploading, { name: file.name }));
    window.PortalUploads.send(root.dataset.uploadUrl, file, window.PortalUploads.csrfToken(composer), {
      onDone: function (result) {
        attach(result.id, result.name);
        say("");
      },
      onFail: function (detail) {
        say(format(texts.upload_failed, { detail: detail }), true);
      },
      onNetwork: function () {
        say(format(texts.upload_failed, { detail: "network" }), true);
      }
    });
  }

  // The file chooser, and on phones the camera (an inspection photo taken on site).
  [fileInput, document.getElementById("camera-input")].forEach(function (input) {
    if (!input) {
      return;
    }
    input.addEventListener("change", function () {
      Array.prototype.forEach.call(input.files, upload);
      input.value = "";
    });
  });
  composer.addEventListener("dragover", function (event) {
    event.preventDefault();
    composer.classList.add("dragging");
  });
  composer.addEventListener("dragleave", function () {
    composer.classList.remove("dragging");
  });
  composer.addEventListener("drop", function (event) {
    event.preventDefault();
    composer.classList.remove("dragging");
    Array.prototype.forEach.call(event.dataTransfer.files, upload);
  });
  Array.prototype.forEach.call(document.querySelectorAll(".pick[data-asset-id]"), function (button) {
    button.addEventListener("click", function () {
      attach(button.dataset.assetId, button.dataset.name);
      // Chosen: the picker closes so that it no longer covers Send and Stop.
      var picker = document.getElementById("file-picker");
      if (picker) {
        picker.open = false;
      }
    });
  });

  temperature.addEventListener("input", function () {
    temperatureValue.textContent = temperature.value;
  });

  // --- the conversation list ---------------------------------------------------------------------
  function rememberConversation(id, title) {
    state.conversation = id;
    root.dataset.conversation = String(id);
    var url = root.dataset.homeUrl + "?c=" + id;
    window.history.replaceState(null, "", url);
    var empty = conversationList.querySelector(".empty");
    if (empty) {
      empty.remove();
    }
    Array.prototype.forEach.call(conversationList.children, function (item) {
      item.classList.remove("current");
    });
    var item = document.createElement("li");
    item.className = "current";
    var link = document.createElement("a");
    link.href = url;
    link.textContent = title || texts.untitled;
    item.appendChild(link);
    conversationList.insertBefore(item, conversationList.firstChild);
    showConversationTools(id, title);
  }

  // Rename, Delete and Export for a conversation started on this page, without a reload.
  function showConversationTools(id, title) {
    var tools = document.getElementById("conversation-tools");
    if (!tools) {
      return;
    }
    var forId = function (url) { return url.replace(/\/0\/(rename|delete)\/$/, "/" + id + "/$1/"); };
    tools.querySelector(".rename-form").action = forId(tools.dataset.renameUrl);
    tools.querySelector(".delete-form").action = forId(tools.dataset.deleteUrl);
    tools.querySelector(".rename-form input[name=title]").value = title || "";
    var forExport = function (url) { return url.replace(/\/0\/export\./, "/" + id + "/export."); };
    tools.querySelector("a[data-export=md]").href = forExport(tools.dataset.exportMdUrl);
    tools.querySelector("a[data-export=json]").href = forExport(tools.dataset.exportJsonUrl);
    tools.hidden = false;
  }

  // --- the websocket -----------------------------------------------------------------------------
  function setBusy(busy) {
    stopButton.hidden = !busy;
    sendButton.disabled = busy || !state.socket || state.socket.readyState !== WebSocket.OPEN;
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + root.dataset.wsPath);
    state.socket = socket;
    connectionLine.textContent = texts.connecting;
    socket.addEventListener("open", function () {
      state.retryDelay = 1000;
      connectionLine.textContent = texts.connected;
      setBusy(false);
    });
    socket.addEventListener("message", function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      handle(frame);
    });
    socket.addEventListener("close", function (event) {
      state.socket = null;
      if (state.turn) {
        finishTurn(texts.failed, "msg-status");
      }
      setBusy(false);
      sendButton.disabled = true;
      if (event.code === 4401) {
        state.closedForGood = true;
        connectionLine.textContent = texts.session_ended;
        say(texts.session_ended, true);
      } else if (event.code === 4403) {
        state.closedForGood = true;
        connectionLine.textContent = texts.access_revoked;
        say(texts.access_revoked, true);
      } else if (!state.closedForGood) {
        connectionLine.textContent = texts.disconnected;
        window.setTimeout(connect, state.retryDelay);
        state.retryDelay = Math.min(state.retryDelay * 2, 30000);
      }
    });
  }

  function finishTurn(statusText, className) {
    var turn = state.turn;
    state.turn = null;
    if (!turn) {
      return;
    }
    if (turn.pendingRender) {
      window.cancelAnimationFrame(turn.pendingRender);
    }
    showMarkdown(turn.body, turn.text);
    if (turn.waiting) {
      turn.waiting.remove();
    }
    if (statusText) {
      addStatus(turn.article, statusText, className);
    }
    turn.article.classList.remove("streaming");
    setBusy(false);
    pollStatus();
    // The engine frees the answer's place just after its last frame: look again shortly, so the
    // panel does not keep showing it as generating until the next regular poll.
    window.setTimeout(pollStatus, 1500);
    scrollDown();
  }

  function errorText(frame) {
    var key = "error_" + frame.code;
    if (texts[key]) {
      return format(texts[key], frame);
    }
    return format(texts.error, { message: frame.message });
  }

  function handle(frame) {
    var turn = state.turn;
    switch (frame.type) {
      case "hello":
        if (frame.model && frame.model.is_demo) {
          document.getElementById("demo-banner").hidden = false;
        }
        break;
      case "turn.accepted":
        if (turn) {
          turn.requestId = frame.request_id;
        }
        break;
      case "queued":
        if (turn && turn.waiting) {
          turn.waiting.textContent = format(texts.queued, frame);
        }
        break;
      case "token":
        if (!turn) {
          break;
        }
        turn.text += frame.text;
        if (turn.waiting) {
          turn.waiting.remove();
          turn.waiting = null;
        }
        if (!turn.pendingRender) {
          // Re-render at most once per frame: long answers stay smooth.
          turn.pendingRender = window.requestAnimationFrame(function () {
            turn.pendingRender = null;
            showMarkdown(turn.body, turn.text);
            scrollDown();
          });
        }
        break;
      case "done":
        if (frame.conversation && frame.conversation !== state.conversation) {
          rememberConversation(frame.conversation, frame.title);
        }
        if (turn) {
          var usage = frame.usage || {};
          var seconds = ((performance.now() - turn.started) / 1000).toFixed(1);
          var line = format(texts.usage, {
            tokens: usage.completion_tokens || 0,
            tps: (usage.tokens_per_second || 0).toFixed ? (usage.tokens_per_second || 0).toFixed(1) : 0,
            seconds: seconds,
          });
          if (frame.status === "stopped") {
            line = texts.stopped + " · " + line;
          }
          if (frame.model_sha256) {
            line += " · " + format(texts.model_version, { version: frame.model_sha256.slice(0, 12) });
          }
          var article = turn.article;
          finishTurn(line, "msg-usage");
          showPages(article, usage.pages);
        }
        break;
      case "error":
        if (frame.conversation && frame.conversation !== state.conversation) {
          rememberConversation(frame.conversation, "");
        }
        if (turn && (frame.ref === turn.ref || !frame.ref)) {
          if (frame.code !== "turn_in_progress") {
            finishTurn(errorText(frame), "msg-status error");
          }
        }
        say(errorText(frame), true);
        break;
      default:
        break;
    }
  }

  function send(text) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN || state.turn) {
      return;
    }
    text = (text || "").trim();
    if (!text && !state.attachments.length) {
      return;
    }
    state.refCounter += 1;
    var ref = "t" + state.refCounter;
    var params = { temperature: parseFloat(temperature.value) };
    var tokens = parseInt(maxTokens.value, 10);
    if (tokens > 0) {
      params.max_new_tokens = tokens;
    }
    var frame = {
      v: 1,
      type: "turn.start",
      ref: ref,
      conversation: state.conversation,
      text: text,
      assets: state.attachments.map(function (item) { return item.id; }),
      params: params,
    };
    if (state.template) {
      frame.template = state.template;
    }
    // The model the person chose (shown when the department may use several loaded models).
    var modelChoice = document.getElementById("model-choice");
    if (modelChoice && modelChoice.value) {
      frame.model = modelChoice.value;
    }
    addMessage("user", text, state.attachments.slice());
    var answer = addMessage("assistant", "");
    answer.article.classList.add("streaming");
    answer.body.setAttribute("data-markdown", "");
    var waiting = addStatus(answer.article, texts.thinking, "msg-status msg-waiting");
    state.turn = {
      ref: ref, article: answer.article, body: answer.body, waiting: waiting, text: "", started: performance.now(),
    };
    state.attachments = [];
    renderAttachments();
    chooseTemplate(null);
    promptBox.value = "";
    say("");
    setBusy(true);
    state.socket.send(JSON.stringify(frame));
    window.setTimeout(pollStatus, 300); // the queue and the running generations just changed
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    send(promptBox.value);
  });
  promptBox.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send(promptBox.value);
    }
  });
  stopButton.addEventListener("click", function () {
    if (state.socket && state.turn) {
      state.socket.send(JSON.stringify({ v: 1, type: "turn.stop" }));
    }
  });
  // A template chip fills in its instruction (to edit, and to attach files to) and is sent with
  // the next question, whose answer the model then shapes by the template's schema; clicking the
  // chosen chip again lets it go.
  var templateChips = document.querySelectorAll(".template-prompt");
  function chooseTemplate(button) {
    var chosen = button && state.template !== button.dataset.template ? button.dataset.template : "";
    state.template = chosen;
    Array.prototype.forEach.call(templateChips, function (chip) {
      chip.setAttribute("aria-pressed", String(chip.dataset.template === chosen));
    });
    if (chosen) {
      promptBox.value = button.dataset.prompt;
      promptBox.focus();
    }
  }
  Array.prototype.forEach.call(templateChips, function (button) {
    button.addEventListener("click", function () {
      chooseTemplate(button);
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });

  // --- the status panel --------------------------------------------------------------------------
  function bytes(value) {
    if (value === null || value === undefined) {
      return "—";
    }
    return (value / 1073741824).toFixed(1) + " GiB";
  }

  function setText(id, value) {
    var element = document.getElementById(id);
    if (element) {
      element.textContent = value;
    }
  }

  function pollStatus() {
    var xhr = new XMLHttpRequest();
    // The panel follows the model chosen in the selector (the department's default without one).
    var chosenModel = document.getElementById("model-choice");
    var statusUrl = root.dataset.statusUrl;
    if (chosenModel && chosenModel.value) {
      statusUrl += (statusUrl.indexOf("?") < 0 ? "?" : "&") + "model=" + encodeURIComponent(chosenModel.value);
    }
    xhr.open("GET", statusUrl);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.addEventListener("load", function () {
      var data;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (e) {
        return;
      }
      if (!data.ready) {
        setText("st-model", texts.loading);
        return;
      }
      setText("st-model", data.model.name);
      setText("st-quant", data.model.quantization);
      setText("st-device", data.model.device);
      document.getElementById("demo-banner").hidden = !data.model.is_demo;
      setText("st-queue", format(texts.queue, { depth: data.queue_depth, here: data.queue_here }));
      setText("st-active", format(texts.active, { active: data.active_generations, max: data.max_concurrent_generations }));
      setText("st-tps", String(data.tokens_per_second));
      var device = data.device || {};
      var gpus = device.gpus || [];
      if (gpus.length) {
        setText("st-mem-label", texts.gpu_memory);
        setText("st-load-label", texts.gpu_load);
        setText("st-mem", gpus.map(function (gpu) {
          return bytes(gpu.memory_used_bytes) + " / " + bytes(gpu.memory_total_bytes);
        }).join(", "));
        setText("st-load", gpus.map(function (gpu) {
          var temp = gpu.temperature_celsius === null || gpu.temperature_celsius === undefined ? "—" : gpu.temperature_celsius + " °C";
          var load = gpu.utilisation_percent === null || gpu.utilisation_percent === undefined ? "—" : gpu.utilisation_percent + " %";
          return temp + " / " + load;
        }).join(", "));
      } else if (device.host) {
        setText("st-mem-label", texts.host_memory);
        setText("st-load-label", texts.host_load);
        setText("st-mem", bytes(device.host.memory_used_bytes) + " / " + bytes(device.host.memory_total_bytes));
        setText("st-load", device.host.cpu_percent === undefined ? "—" : device.host.cpu_percent + " %");
      }
    });
    xhr.send();
  }

  connect();
  pollStatus();
  var modelSelector = document.getElementById("model-choice");
  if (modelSelector) {
    modelSelector.addEventListener("change", pollStatus);
  }
  // A background poll: it never keeps the session alive (accounts/activity.py), and it stops
  // once the session has ended (static/js/session.js).
  var statusPoller = window.setInterval(pollStatus, 5000);
  document.addEventListener("platform:session-ended", function () {
    window.clearInterval(statusPoller);
  });
})();
