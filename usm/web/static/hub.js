// The hub's few scripts. Every page works without them; they add:
// - on the world map: zoom (buttons, wheel), panning by dragging, picking a place for the launch form by
//   clicking, and refreshing the markers every N seconds (data-refresh-url, data-refresh-seconds);
// - on pages with [data-poll]: reloading the page every N seconds while a job runs (the progress view).
"use strict";

(function () {
  var MAX_ZOOM = 16;

  function parseBox(text) {
    var parts = text.split(/[\s,]+/).map(Number);
    return { x: parts[0], y: parts[1], w: parts[2], h: parts[3] };
  }

  function setupMap(svg) {
    var world = parseBox(svg.getAttribute("viewBox"));
    var box = Object.assign({}, world);
    var drag = null;

    function apply() {
      svg.setAttribute("viewBox", [box.x, box.y, box.w, box.h].join(" "));
      svg.style.setProperty("--mark-scale", String(Math.max(box.w / world.w, 1 / MAX_ZOOM * 2)));
    }

    function clamp() {
      box.w = Math.min(world.w, Math.max(world.w / MAX_ZOOM, box.w));
      box.h = box.w * world.h / world.w;
      box.x = Math.min(world.x + world.w - box.w, Math.max(world.x, box.x));
      box.y = Math.min(world.y + world.h - box.h, Math.max(world.y, box.y));
    }

    function zoom(factor, cx, cy) {
      if (cx === undefined) { cx = box.x + box.w / 2; cy = box.y + box.h / 2; }
      var w = box.w / factor;
      box.x = cx - (cx - box.x) * (w / box.w);
      box.y = cy - (cy - box.y) * (w / box.w);
      box.w = w;
      clamp();
      apply();
    }

    function pointAt(event) {
      var point = svg.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      return point.matrixTransform(svg.getScreenCTM().inverse());
    }

    function pick(point) {
      var latitude = Math.max(-90, Math.min(90, -point.y));
      var longitude = Math.max(-180, Math.min(180, point.x));
      var lat = document.getElementById("launch-latitude");
      var lon = document.getElementById("launch-longitude");
      if (lat && lon) {
        lat.value = latitude.toFixed(4);
        lon.value = longitude.toFixed(4);
        var near = document.getElementById("where-near");
        if (near) { near.checked = true; }
      }
      var marker = document.getElementById("pick");
      if (marker) {
        marker.setAttribute("transform", "translate(" + longitude + " " + (-latitude) + ")");
        marker.classList.remove("off");
      }
      var status = document.getElementById("pick-status");
      if (status) {
        status.textContent = "Place chosen: latitude " + latitude.toFixed(4) + ", longitude " +
          longitude.toFixed(4) + ". Choose a service and launch.";
      }
    }

    document.querySelectorAll("[data-map]").forEach(function (button) {
      button.addEventListener("click", function () {
        var what = button.getAttribute("data-map");
        if (what === "in") { zoom(2); } else if (what === "out") { zoom(0.5); } else {
          box = Object.assign({}, world);
          apply();
        }
      });
    });

    svg.addEventListener("wheel", function (event) {
      event.preventDefault();
      var at = pointAt(event);
      zoom(event.deltaY < 0 ? 1.25 : 0.8, at.x, at.y);
    }, { passive: false });

    svg.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) { return; }
      drag = { x: event.clientX, y: event.clientY, box: Object.assign({}, box), moved: false };
    });
    svg.addEventListener("pointermove", function (event) {
      if (!drag) { return; }
      var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 5) { return; }
      drag.moved = true;
      var scale = box.w / svg.getBoundingClientRect().width;
      box.x = drag.box.x - dx * scale;
      box.y = drag.box.y - dy * scale;
      clamp();
      apply();
    });
    svg.addEventListener("pointerup", function (event) {
      var was = drag;
      drag = null;
      if (!was || was.moved || event.target.closest("a")) { return; }
      pick(pointAt(event));
    });
    svg.addEventListener("pointerleave", function () { drag = null; });

    var url = svg.getAttribute("data-refresh-url");
    var seconds = Number(svg.getAttribute("data-refresh-seconds"));
    if (url && seconds > 0) {
      var timer = window.setInterval(function () {
        fetch(url, { credentials: "same-origin", headers: { "Accept": "image/svg+xml" } })
          .then(function (response) {
            if (!response.ok || response.redirected) { throw new Error("signed out"); }
            return response.text();
          })
          .then(function (text) {
            var fresh = new DOMParser().parseFromString(text, "image/svg+xml").getElementById("markers");
            var old = document.getElementById("markers");
            if (!fresh || !old) { return; }
            old.replaceWith(document.importNode(fresh, true));
            var summary = document.getElementById("map-summary");
            var updated = document.getElementById("map-updated");
            if (summary) { summary.textContent = fresh.getAttribute("data-summary"); }
            if (updated) { updated.textContent = fresh.getAttribute("data-updated"); }
          })
          .catch(function () { window.clearInterval(timer); });
      }, seconds * 1000);
    }
    apply();
  }

  function setupPoll(element) {
    var seconds = Number(element.getAttribute("data-poll"));
    if (seconds > 0) {
      window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var svg = document.getElementById("world");
    if (svg) { setupMap(svg); }
    document.querySelectorAll("[data-poll]").forEach(setupPoll);
  });
})();
