// Local MMODA gallery: zoom and pan of product images, copy buttons. No library, no network.
(function () {
  "use strict";

  function zoomable(box) {
    var img = box.querySelector("img");
    if (!img) { return; }
    var scale = 1, x = 0, y = 0, dragging = null;

    function apply() { img.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")"; }

    function fit() {
      if (!img.naturalWidth) { return; }
      scale = Math.min(box.clientWidth / img.naturalWidth, box.clientHeight / img.naturalHeight);
      x = (box.clientWidth - img.naturalWidth * scale) / 2;
      y = (box.clientHeight - img.naturalHeight * scale) / 2;
      apply();
    }

    box.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = box.getBoundingClientRect();
      var px = event.clientX - rect.left, py = event.clientY - rect.top;
      var factor = event.deltaY < 0 ? 1.2 : 1 / 1.2;
      // zoom about the cursor: the image point under it stays put
      x = px - (px - x) * factor;
      y = py - (py - y) * factor;
      scale *= factor;
      apply();
    }, { passive: false });
    box.addEventListener("pointerdown", function (event) {
      dragging = { x: event.clientX - x, y: event.clientY - y };
      box.setPointerCapture(event.pointerId);
      box.style.cursor = "grabbing";
    });
    box.addEventListener("pointermove", function (event) {
      if (!dragging) { return; }
      x = event.clientX - dragging.x;
      y = event.clientY - dragging.y;
      apply();
    });
    box.addEventListener("pointerup", function () { dragging = null; box.style.cursor = "grab"; });
    box.addEventListener("dblclick", fit);
    if (img.complete) { fit(); } else { img.addEventListener("load", fit); }
    window.addEventListener("resize", fit);
  }

  document.querySelectorAll("[data-zoom]").forEach(zoomable);

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.getAttribute("data-copy")).textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      }
    });
  });
}());
