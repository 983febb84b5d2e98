// JS9's preferences for the local MMODA gallery (read by js9.min.js, which must come after this file).
// JS9 runs without its Node helper: FITS files are fetched from the gallery and opened in the browser
// (cfitsio and wcslib compiled to WebAssembly), so no helper, proxy or server work folder is configured
// and no connection to one is ever tried.
var JS9Prefs = {
  globalOpts: {
    helperType: "none",
    requireHelper: false,
    loadProxy: false,
    workDir: null,
    dataPath: null,
    analysisPlugins: null,
    analysisWrappers: null,
    processQueryParams: false,
    postMessage: false,
    debug: 0
  },
  imageOpts: {
    colormap: "viridis",
    scale: "linear",
    scaleclipping: "zscale",
    wcsunits: "degrees",
    valpos: true
  }
};
