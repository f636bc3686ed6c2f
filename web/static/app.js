/* Coffre: the pages' only script. Everything works without it; with it come
   reveal/copy without a reload, the generator, live password strength, table
   sorting and filtering, and the idle lock. No inline code, no eval. */
(function () {
  "use strict";

  var body = document.body;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var HIDE_AFTER_MS = 30000;

  function msg(name) { return body.getAttribute("data-msg-" + name) || ""; }

  function announce(text, isError) {
    var box = document.getElementById("js-notice");
    if (!box) {
      box = document.createElement("div");
      box.id = "js-notice";
      var container = document.querySelector("main .container");
      if (!container) { return; }
      container.insertBefore(box, container.firstChild);
    }
    box.className = "notice " + (isError ? "notice-error" : "notice-ok");
    box.setAttribute("role", isError ? "alert" : "status");
    box.textContent = text;
  }

  function post(url, payload, isJson) {
    var headers = { "X-CSRF-Token": csrf, "Accept": "application/json" };
    var data;
    if (isJson) {
      headers["Content-Type"] = "application/json";
      data = JSON.stringify(payload);
    } else {
      data = new URLSearchParams(payload);
    }
    return fetch(url, { method: "POST", headers: headers, body: data, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (json) {
          if (response.status === 401) { window.location.assign("/login"); }
          if (!response.ok) { throw new Error(json.error || msg("error")); }
          return json;
        });
      });
  }

  /* The clipboard: written on request, emptied after 30 s. Reading it first would
     ask the user for permission (Chromium) or be refused (Firefox, Safari), so the page
     empties it without reading, when it has the focus (browsers allow clipboard writes
     only then); a page in the background cannot, which the notice and the docs say. */
  function copyText(value) {
    return navigator.clipboard.writeText(value).then(function () {
      announce(msg("copied"), false);
      window.setTimeout(function () {
        if (document.hasFocus()) {
          navigator.clipboard.writeText("").catch(function () { /* refused: nothing more to do */ });
        }
      }, HIDE_AFTER_MS);
    });
  }

  // Elements that only make sense with a script.
  document.querySelectorAll("[data-copy-from],[data-copy-form],[data-toggle-visibility],[data-generator]").forEach(function (el) {
    el.removeAttribute("hidden");
  });
  document.querySelectorAll("[data-js-hide]").forEach(function (el) { el.setAttribute("hidden", ""); });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // One-time links carry their code in the fragment: move it into the form, then out of the address bar.
  var tokenInput = document.getElementById("token");
  if (tokenInput && window.location.hash.indexOf("#token=") === 0) {
    tokenInput.value = decodeURIComponent(window.location.hash.slice(7));
    history.replaceState(null, "", window.location.pathname);
    var tokenField = document.querySelector("[data-token-field]");
    if (tokenField) { tokenField.setAttribute("hidden", ""); }
  }

  // Live password strength (the server's estimator; the submit checks again).
  document.querySelectorAll("input[data-strength]").forEach(function (input) {
    var out = document.getElementById(input.getAttribute("aria-describedby"));
    var timer = null;
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      if (!input.value) { return; }
      timer = window.setTimeout(function () {
        post("/ui/strength", { password: input.value }, true).then(function (json) {
          if (out) { out.textContent = json.reason; out.setAttribute("data-ok", json.ok ? "true" : "false"); }
        }, function () { /* the submit will say */ });
      }, 300);
    });
  });

  // Reveal: fetched by POST on request, hidden again after 30 s.
  document.querySelectorAll("form[data-reveal-form]").forEach(function (form) {
    var output = document.querySelector("[data-secret]");
    var button = form.querySelector("button");
    var masked = output ? output.textContent : "";
    var timer = null;
    function hide() {
      window.clearTimeout(timer);
      if (output) { output.textContent = masked; }
      button.textContent = msg("reveal");
      form.removeAttribute("data-shown");
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (form.hasAttribute("data-shown")) { hide(); return; }
      post(form.action, new FormData(form), false).then(function (json) {
        output.textContent = json.value;
        button.textContent = msg("hide");
        form.setAttribute("data-shown", "");
        timer = window.setTimeout(hide, HIDE_AFTER_MS);
      }, function (error) { announce(error.message, true); });
    });
  });

  // TOTP: the code on request (POST), with a countdown; renewed at each period for 5 minutes.
  document.querySelectorAll("form[data-totp-form]").forEach(function (form) {
    var box = form.closest("[data-totp]");
    var output = box.querySelector("output");
    var left = box.querySelector("[data-totp-left]");
    var copy = box.querySelector("[data-totp-copy]");
    var masked = output.textContent;
    var ticker = null, periods = 0, remaining = 0;
    function stop() {
      window.clearInterval(ticker);
      ticker = null;
      output.textContent = masked;
      left.textContent = "";
    }
    function fetchCode() {
      return post(form.action, new FormData(form), false).then(function (json) {
        output.textContent = json.code;
        remaining = json.seconds_left;
        left.textContent = left.getAttribute("data-template").replace("{n}", String(remaining));
        return json.code;
      });
    }
    function tick() {
      remaining -= 1;
      if (remaining > 0) {
        left.textContent = left.getAttribute("data-template").replace("{n}", String(remaining));
        return;
      }
      periods += 1;
      if (periods >= 10) { stop(); return; }
      fetchCode().catch(function (error) { stop(); announce(error.message, true); });
    }
    function start() {
      periods = 0;
      return fetchCode().then(function (code) {
        if (ticker === null) { ticker = window.setInterval(tick, 1000); }
        return code;
      });
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      start().catch(function (error) { announce(error.message, true); });
    });
    if (copy) {
      copy.removeAttribute("hidden");
      copy.addEventListener("click", function () {
        start().then(copyText).catch(function (error) { announce(error.message, true); });
      });
    }
  });

  // Copy password: fetched by POST, never shown.
  document.querySelectorAll("form[data-copy-form]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      post(form.action, new FormData(form), false).then(function (json) {
        return copyText(json.value);
      }).catch(function (error) { announce(error.message, true); });
    });
  });

  document.querySelectorAll("[data-copy-from]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.querySelector(button.getAttribute("data-copy-from"));
      if (!source) { return; }
      var value = source.value !== undefined && source.tagName === "INPUT" ? source.value : source.textContent;
      copyText(value).catch(function (error) { announce(error.message, true); });
    });
  });

  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });

  document.querySelectorAll("[data-toggle-visibility]").forEach(function (button) {
    var input = document.querySelector(button.getAttribute("data-toggle-visibility"));
    var showLabel = button.textContent;
    button.addEventListener("click", function () {
      var hidden = input.type === "password";
      input.type = hidden ? "text" : "password";
      button.textContent = hidden ? msg("hide") : showLabel;
    });
  });

  // The password generator (server-side, `secrets`).
  document.querySelectorAll("[data-generator]").forEach(function (panel) {
    var status = panel.querySelector("[data-gen-status]");
    panel.querySelector("[data-generate]").addEventListener("click", function () {
      var options = {};
      panel.querySelectorAll("[data-gen]").forEach(function (input) {
        var name = input.getAttribute("data-gen");
        options[name] = input.type === "checkbox" ? input.checked : parseInt(input.value, 10);
      });
      post("/ui/generate", options, true).then(function (json) {
        var field = document.getElementById("password");
        field.value = json.value;
        field.type = "text";
        var toggle = document.querySelector("[data-toggle-visibility]");
        if (toggle) { toggle.textContent = msg("hide"); }
        status.textContent = "";
      }, function (error) { status.textContent = error.message; });
    });
  });

  // Items table: filter as you type, sort by column, remember the sort.
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var table = document.querySelector(input.getAttribute("data-filter"));
    var count = document.querySelector("[data-count]");
    if (!table) { return; }
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      var shown = 0;
      table.querySelectorAll("tbody tr").forEach(function (row) {
        var hay = [row.dataset.title, row.dataset.username, row.dataset.url].join(" ");
        var match = !needle || hay.indexOf(needle) !== -1;
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      if (count) { count.textContent = count.textContent.replace(/\d+/, String(shown)); }
    });
  });

  document.querySelectorAll("table[data-sortable]").forEach(function (table) {
    var storeKey = table.getAttribute("data-sort-store");
    var tbody = table.tBodies[0];
    function apply(key, dir) {
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(function (a, b) {
        var x = a.dataset[key] || "", y = b.dataset[key] || "";
        var cmp = key === "updated" ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return dir === "desc" ? -cmp : cmp;
      });
      rows.forEach(function (row) { tbody.appendChild(row); });
      table.querySelectorAll("th[data-sort-key]").forEach(function (th) {
        if (th.getAttribute("data-sort-key") === key) {
          th.setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending");
        } else { th.removeAttribute("aria-sort"); }
      });
    }
    table.querySelectorAll("th[data-sort-key] a").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var th = link.closest("th");
        var key = th.getAttribute("data-sort-key");
        var dir = th.getAttribute("aria-sort") === "ascending" ? "desc" : "asc";
        apply(key, dir);
        try { localStorage.setItem(storeKey, JSON.stringify({ key: key, dir: dir })); } catch (e) { /* private mode */ }
      });
    });
    if (window.location.search.indexOf("sort=") === -1) {
      try {
        var saved = JSON.parse(localStorage.getItem(storeKey) || "null");
        if (saved && /^(title|username|url|updated)$/.test(saved.key)) { apply(saved.key, saved.dir === "desc" ? "desc" : "asc"); }
      } catch (e) { /* nothing saved */ }
    }
  });

  // The idle lock: after a quiet period the page wipes itself, ends the session and shows the lock page.
  var idleSeconds = parseInt(body.getAttribute("data-idle-lock") || "0", 10);
  if (idleSeconds > 0) {
    var idleTimer = null;
    var lock = function () {
      var main = document.getElementById("main");
      if (main) { main.replaceChildren(); }
      document.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; });
      var post = function () {
        return fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin", keepalive: true, redirect: "manual" });
      };
      // One retry; if the server cannot be reached, its idle timeout ends the session.
      post().catch(post).catch(function () { return null; })
        .then(function () { window.location.replace("/locked"); });
    };
    var touch = function () {
      window.clearTimeout(idleTimer);
      idleTimer = window.setTimeout(lock, idleSeconds * 1000);
    };
    ["keydown", "mousedown", "pointerdown", "touchstart", "wheel"].forEach(function (name) {
      document.addEventListener(name, touch, { passive: true, capture: true });
    });
    touch();
  }
}());
