// Palermo dashboard: live refresh, confirmations and selection. Plain JavaScript, no
// build step, loaded from the dashboard itself (the CSP allows no inline script).
//
// Live refresh fetches the same page and swaps in the elements marked data-live (by id);
// it pauses while a confirmation dialog is open, while any row is selected, and while the
// tab is hidden, so a refresh can never drop a confirmation or a selection.
(function () {
  "use strict";
  var LIVE_KEY = "palermo.live";

  function liveEnabled() {
    try { return window.localStorage.getItem(LIVE_KEY) === "on"; } catch (e) { return false; }
  }
  function setLive(on) {
    try { window.localStorage.setItem(LIVE_KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
  }
  function busy() {
    return document.querySelector("dialog[open]") !== null ||
      document.querySelector("input.select-failure:checked") !== null ||
      document.visibilityState === "hidden";
  }

  function refresh() {
    if (!liveEnabled() || busy()) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Palermo-Refresh": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null || busy()) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) { old.replaceWith(document.importNode(next, true)); }
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function setUpLive() {
    var body = document.body;
    var toggle = document.getElementById("live-toggle");
    if (!body.hasAttribute("data-live-page") || !toggle) { return; }
    toggle.checked = liveEnabled();
    toggle.addEventListener("change", function () { setLive(toggle.checked); if (toggle.checked) { refresh(); } });
    var secs = parseInt(body.getAttribute("data-refresh-secs"), 10) || 5;
    window.setInterval(refresh, secs * 1000);
  }

  // Confirmation: a click on a button with data-confirm opens the dialog; Confirm submits
  // the button's form with confirmed=1 (the server asks again without it).
  var pending = null;
  function selectedCount() {
    return document.querySelectorAll("input.select-failure:checked").length;
  }
  function setUpConfirm() {
    var dialog = document.getElementById("confirm-dialog");
    var message = document.getElementById("confirm-message");
    if (!dialog || !message) { return; }
    document.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("button[data-confirm]") : null;
      if (!button || !button.form) { return; }
      event.preventDefault();
      pending = button;
      message.textContent = button.getAttribute("data-confirm").replace("{n}", String(selectedCount()));
      if (typeof dialog.showModal === "function") { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
    });
    document.getElementById("confirm-no").addEventListener("click", function () { pending = null; dialog.close(); });
    dialog.addEventListener("cancel", function () { pending = null; });
    document.getElementById("confirm-yes").addEventListener("click", function () {
      var button = pending;
      pending = null;
      dialog.close();
      if (!button) { return; }
      var form = button.form;
      var confirmed = document.createElement("input");
      confirmed.type = "hidden";
      confirmed.name = "confirmed";
      confirmed.value = "1";
      form.appendChild(confirmed);
      if (typeof form.requestSubmit === "function") { form.requestSubmit(button); } else {
        form.action = button.formAction || form.action;
        form.submit();
      }
    });
  }

  // Selection: "select all" and the buttons that need a selection.
  function setUpSelection() {
    var boxes = document.querySelectorAll("input.select-failure");
    var all = document.getElementById("select-all");
    var count = document.getElementById("selection-count");
    function update() {
      var n = selectedCount();
      document.querySelectorAll("button[data-needs-selection]").forEach(function (b) { b.disabled = n === 0; });
      if (count) { count.textContent = n > 0 ? n + " selected" : ""; }
      if (all) { all.checked = n > 0 && n === boxes.length; }
    }
    boxes.forEach(function (box) { box.addEventListener("change", update); });
    if (all) {
      all.addEventListener("change", function () {
        boxes.forEach(function (box) { box.checked = all.checked; });
        update();
      });
    }
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpLive();
    setUpConfirm();
    setUpSelection();
  });
}());
