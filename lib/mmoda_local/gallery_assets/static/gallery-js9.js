// Local MMODA gallery: the product page's FITS viewer. JS9 (served by the gallery itself, see
// docs/gallery.md) shows the product's FITS image; this file loads it, reads out RA/Dec and the pixel
// value under the cursor, draws the product's sources and wires the scale, colour-map, contrast and bias
// controls. No network beyond the gallery's own server.
(function () {
  "use strict";
  var section = document.getElementById("fits-viewer");
  if (!section || typeof JS9 === "undefined") { return; }
  var display = "JS9";
  var readout = document.getElementById("js9-readout");
  var loaded = false;

  function setState(state, message) {
    section.setAttribute("data-js9-state", state);
    var status = document.getElementById("js9-status");
    if (status) { status.textContent = message || ""; }
  }

  function number(value, digits) {
    return (typeof value === "number" && isFinite(value)) ? value.toFixed(digits) : String(value);
  }

  // RA as 05h34m31.94s (hours = true) or Dec as +22°00′52.1″, rounded before it is split (no "60.0″")
  function sexagesimal(degrees, hours) {
    var decimals = hours ? 2 : 1;
    var scale = Math.pow(10, decimals);
    var total = Math.round(Math.abs(hours ? degrees / 15 : degrees) * 3600 * scale);
    if (hours) { total = total % (24 * 3600 * scale); }
    var whole = Math.floor(total / (3600 * scale)), minutes = Math.floor(total / (60 * scale)) % 60;
    var seconds = (total % (60 * scale)) / scale;
    var two = function (x) { return (x < 10 ? "0" : "") + x; };
    var secondsText = (seconds < 10 ? "0" : "") + seconds.toFixed(decimals);
    if (hours) { return two(whole) + "h" + two(minutes) + "m" + secondsText + "s"; }
    return (degrees < 0 ? "-" : "+") + two(whole) + "°" + two(minutes) + "′" + secondsText + "″";
  }

  // What the readout says at image position ipos (1-based FITS pixels, as JS9 counts them).
  function describe(ipos) {
    var world = JS9.PixToWCS(ipos.x, ipos.y, { display: display });
    var valpos = JS9.GetValPos(ipos, false, { display: display });
    var text = "pixel " + number(ipos.x, 1) + ", " + number(ipos.y, 1);
    if (world && typeof world.ra === "number") {
      text += " · RA " + number(world.ra, 5) + "°, Dec " + number(world.dec, 5) + "° (" +
        sexagesimal(world.ra, true) + " " + sexagesimal(world.dec, false) + ")";
    }
    if (valpos) { text += " · value " + (valpos.val3 !== undefined ? valpos.val3 : valpos.val); }
    return { text: text, world: world, value: valpos ? valpos.val : null };
  }

  // A plugin without a window: JS9 calls it on every mouse move over the display and on every change of
  // scale or colours (by the page's controls, JS9's menus or the mouse), for each image of any display.
  function ours(im) { return loaded && im && im.display && im.display.id === display; }
  function changed(im) { if (ours(im)) { follow(); } }
  JS9.RegisterPlugin("MMODA", "Readout", function () { return null; }, {
    onsetscale: changed,
    onsetcolormap: changed,
    onchangecontrastbias: changed,
    onmousemove: function (im, ipos) {
      if (!readout || !im || im.display.id !== display) { return; }
      var info = describe(ipos);
      readout.textContent = info.text;
      readout.setAttribute("data-x", ipos.x);
      readout.setAttribute("data-y", ipos.y);
      readout.setAttribute("data-ra", info.world ? info.world.ra : "");
      readout.setAttribute("data-dec", info.world ? info.world.dec : "");
      readout.setAttribute("data-value", info.value);
    },
    winDims: [0, 0]
  });

  function drawSources() {
    var node = document.getElementById("js9-regions");
    var sources = node ? JSON.parse(node.textContent) : [];
    sources.forEach(function (source) {
      var radius = (source.radius_deg || 0.2) * 3600;
      JS9.AddRegions("fk5; circle(" + source.ra + "," + source.dec + "," + radius + "\")",
                     { text: source.name, color: "#ff40e0", movable: false, resizable: false, rotatable: false,
                       removable: false },
                     { display: display });
    });
  }

  function controls() {
    var scale = document.getElementById("js9-scale");
    var limits = document.getElementById("js9-limits");
    var colormap = document.getElementById("js9-colormap");
    var contrast = document.getElementById("js9-contrast");
    var bias = document.getElementById("js9-bias");
    var reset = document.getElementById("js9-reset");
    if (scale) {
      scale.addEventListener("change", function () { JS9.SetScale(scale.value, { display: display }); });
    }
    if (limits) {
      limits.addEventListener("change", function () { JS9.SetScale(limits.value, { display: display }); });
    }
    if (colormap) {
      colormap.addEventListener("change", function () { JS9.SetColormap(colormap.value, { display: display }); });
    }
    function contrastBias() {
      JS9.SetColormap(parseFloat(contrast.value), parseFloat(bias.value), { display: display });
    }
    if (contrast && bias) {
      contrast.addEventListener("input", contrastBias);
      bias.addEventListener("input", contrastBias);
    }
    if (reset) {
      reset.addEventListener("click", function () {
        JS9.SetColormap("reset", { display: display });
        contrast.value = 1; bias.value = 0.5;
      });
    }
  }

  // The controls say what JS9 shows, however it was changed (colour map by the mouse, scale by JS9's menus...).
  function follow() {
    var cmap = JS9.GetColormap({ display: display });
    var scale = JS9.GetScale({ display: display });
    var pairs = [["js9-colormap", cmap && cmap.colormap], ["js9-scale", scale && scale.scale],
                 ["js9-limits", scale && scale.scaleclipping], ["js9-contrast", cmap && cmap.contrast],
                 ["js9-bias", cmap && cmap.bias]];
    pairs.forEach(function (pair) {
      var element = document.getElementById(pair[0]);
      if (element && pair[1] !== undefined && pair[1] !== null) {
        element.value = pair[1];
      }
    });
  }

  function load() {
    // JS9.Load, not JS9.Preload: Preload matches the loaded file's name as a regular expression, which a name
    // with its HDU in brackets ("mosaic.fits[ISGR-MOSA-IMA]") breaks (a JS9 3.9 bug)
    JS9.Load(section.getAttribute("data-js9-url"), {
      onload: function (im) {
        // the whole image in the display (a zoom option given to Load is reported but not drawn in JS9 3.9)
        JS9.SetZoom("toFit", { display: display });
        try { drawSources(); } catch (error) { console.warn("gallery: sources not drawn", error); }
        loaded = true;
        follow();
        section.setAttribute("data-js9-image", im.id);
        setState("loaded", "");
      }
    }, { display: display });
  }

  setState("loading", "Loading the FITS file…");
  controls();
  // JS9 is ready once its FITS library (WebAssembly) is loaded
  if (JS9.readied) { load(); } else { $(document).on("JS9:ready", function () { load(); }); }
}());
