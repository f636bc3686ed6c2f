/* Coffre: file uploads streamed from the browser. The file itself is the request
   body (no multipart, nothing buffered or spooled by the server), with the page's
   CSRF token in a header; a progress bar while it goes. No inline code, no eval. */
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function notice(form, text, isError) {
    var box = form.querySelector("[data-upload-notice]");
    if (!box) {
      box = document.createElement("div");
      box.setAttribute("data-upload-notice", "");
      form.insertBefore(box, form.firstChild);
    }
    box.className = "notice " + (isError ? "notice-error" : "notice-ok");
    box.setAttribute("role", isError ? "alert" : "status");
    box.textContent = text;
  }

  function send(form) {
    var input = form.querySelector('input[type="file"]');
    var file = input && input.files && input.files[0];
    if (!file) { return; }
    var base = form.getAttribute("data-upload");
    var url = base + (base.indexOf("?") >= 0 ? "&" : "?") + "name=" + encodeURIComponent(file.name);
    form.querySelectorAll("[data-query]").forEach(function (field) {
      if (field.value) { url += "&" + field.getAttribute("data-query") + "=" + encodeURIComponent(field.value); }
    });
    var xhr = new XMLHttpRequest();
    xhr.open(form.getAttribute("data-method") || "POST", url);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    form.querySelectorAll("[data-header]").forEach(function (field) {
      if (field.value) { xhr.setRequestHeader(field.getAttribute("data-header"), field.value); }
    });
    var bar = form.querySelector("progress");
    var button = form.querySelector('button[type="submit"]');
    if (bar) { bar.hidden = false; bar.value = 0; }
    if (button) { button.disabled = true; }
    xhr.upload.addEventListener("progress", function (event) {
      if (bar && event.lengthComputable) { bar.value = Math.round(100 * event.loaded / event.total); }
    });
    xhr.addEventListener("loadend", function () {
      if (button) { button.disabled = false; }
      if (xhr.status === 201) {
        var done = form.getAttribute("data-done");
        if (done) { window.location.assign(done); return; }
        if (bar) { bar.value = 100; }
        input.value = "";
        notice(form, form.getAttribute("data-msg-done") || "OK", false);
        return;
      }
      if (xhr.status === 401) { window.location.assign("/login"); return; }
      var detail = form.getAttribute("data-msg-refused") || "";
      if (!detail) {
        try { detail = JSON.parse(xhr.responseText).detail; } catch (e) { detail = xhr.statusText; }
      }
      if (bar) { bar.hidden = true; }
      notice(form, detail || String(xhr.status), true);
    });
    xhr.send(file);
  }

  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.querySelectorAll("[data-nojs]").forEach(function (el) { el.hidden = true; });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      send(form);
    });
  });
}());
