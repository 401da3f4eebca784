// Millstream dashboard: auto-refresh of the runs page, live logs of a running flow run,
// confirmation of destructive actions. Text from the server is inserted as text, never HTML.
(function () {
  "use strict";

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  function autoSubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function autoRefresh() {
    var box = document.getElementById("auto-refresh");
    if (!box) return;
    var key = "millstream.autoRefresh";
    box.checked = window.localStorage.getItem(key) === "1";
    var timer = null;
    function arm() {
      if (timer) window.clearTimeout(timer);
      timer = box.checked ? window.setTimeout(function () { window.location.reload(); }, 5000) : null;
    }
    box.addEventListener("change", function () {
      window.localStorage.setItem(key, box.checked ? "1" : "0");
      arm();
    });
    arm();
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (cls === "m") {
      var pre = document.createElement("pre");
      pre.textContent = text;
      td.appendChild(pre);
    } else {
      td.textContent = text;
    }
    return td;
  }

  var LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };

  function liveLogs() {
    var run = document.getElementById("run");
    if (!run || run.getAttribute("data-live") !== "true") return;
    var url = run.getAttribute("data-logs-url");
    var last = parseInt(run.getAttribute("data-last-log") || "0", 10);
    var level = run.getAttribute("data-level") || "";
    var body = document.querySelector("#logs tbody");
    function poll() {
      var q = "?after=" + last + (level ? "&level=" + encodeURIComponent(level) : "");
      fetch(url + q, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
        var none = document.getElementById("logs-none");
        data.logs.forEach(function (line) {
          var tr = document.createElement("tr");
          tr.className = "lvl-" + (LEVELS[line.level] || line.level);
          [["t", line.time], ["l", line.level], ["n", line.name], ["m", line.message]].forEach(function (c) {
            tr.appendChild(cell(c[1], c[0]));
          });
          if (line.extra) {
            // The line's extra fields, under its message (as the page first renders them).
            var extra = document.createElement("div");
            extra.className = "extra";
            extra.textContent = line.extra;
            tr.lastChild.appendChild(extra);
          }
          body.appendChild(tr);
          last = Math.max(last, line.id);
          if (none) none.remove();
        });
        if (data.final) {
          // The run ended: reload once for its final state, result and timeline.
          window.setTimeout(function () { window.location.reload(); }, 500);
        } else {
          window.setTimeout(poll, 1000);
        }
      }).catch(function () { window.setTimeout(poll, 3000); });
    }
    window.setTimeout(poll, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmForms();
    autoSubmit();
    autoRefresh();
    liveLogs();
  });
})();
