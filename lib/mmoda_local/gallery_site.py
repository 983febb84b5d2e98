"""The gallery website: the pages a person browses at ``/gallery/`` (see docs/gallery.md)."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shlex
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, send_file, url_for

from .backend import current_backend
from .gallery_attachments import (
    decompressed,
    notebook_info,
    open_fits,
    parameters_from_yaml,
    produced_by,
    read_table,
    source_notebook,
    sources_from_html,
    sources_from_region,
    sources_from_table,
)
from .gallery_hal import hal_node, site_url
from .gallery_plots import (
    ebounds,
    image_hdu_index,
    image_plot,
    lightcurve_hdu,
    lightcurve_plot,
    response,
    spectrum_hdu,
    spectrum_plot,
)
from .gallery_store import GalleryStore
from .gallery_terms import INSTRUMENTS, normalised_name, product_terms, term_id

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "gallery_assets"

#: Where ``npm ci`` (``make setup``) installs JS9 from the pins of ``gallery_assets/js9/package-lock.json``.
JS9_PACKAGE = ASSETS / "js9" / "node_modules" / "js9"
#: Environment variable naming another JS9 folder (an unpacked ``js9`` npm package).
JS9_ENVIRONMENT = "MMODA_LOCAL_JS9_DIR"
#: Key of the application's JS9 folder (None: JS9 missing) in ``app.extensions``.
JS9_EXTENSION = "mmoda_local_gallery_js9"
#: JS9's top-level files that a page uses (no Node helper, no analysis wrappers, no demos): the first five
#: must be there for the viewer to be offered.
JS9_FILES = (
    "js9support.css",
    "js9.css",
    "js9support.min.js",
    "js9.min.js",
    "js9plugins.js",
    "js9worker.js",
    "astroemw.js",
    "astroemw.wasm",
    "astroem.js",
    "LICENSE",
)
#: JS9's folders that its menus and styles read (icons, fonts, dialog forms, help pages), and what of them.
JS9_FOLDERS = ("images", "font", "params", "help", "plugins")
JS9_FOLDER_SUFFIXES = (".png", ".gif", ".svg", ".jpg", ".ico", ".eot", ".ttf", ".woff", ".woff2", ".html", ".css")

#: Key of the application's product-view cache in ``app.extensions``.
VIEWS_EXTENSION = "mmoda_local_gallery_views"

#: Products per page of a list.
PAGE_SIZE = 48

#: Labels of the instruments and families, as the real gallery shows them.
INSTRUMENT_LABELS = {"isgri": "ISGRI", "jemx": "JEM-X", "jemx1": "JEM-X1", "jemx2": "JEM-X2", "spi_acs": "SPI-ACS"}
FAMILY_LABELS = {"image": "Image", "lightcurve": "Light curve", "spectrum": "Spectrum"}

#: Said on every page showing simulated products.
SIMULATED_TEXT = "made by the local MMODA (mmoda_local) from a simulated INTEGRAL sky, not from INTEGRAL observations."


def rerun_command(notebook: str, parameters: dict, *, output: str) -> str:
    """The ``papermill`` command that reruns ``notebook`` with ``parameters``.

    Strings go through ``-r`` (papermill would turn ``"28.0"`` into a
    number with ``-p``), numbers and booleans through ``-p``, anything else
    through ``-y`` as YAML. ``token`` is never passed: notebooks read it from
    ``$ODA_TOKEN`` or ``.oda-token``.

    Parameters
    ----------
    notebook : str
        The notebook's path in the project (``notebooks/mosaic.ipynb``).
    parameters : dict
        Its parameters (papermill's record of the run).
    output : str
        The executed notebook to write.

    Returns
    -------
    str
        A shell command line.
    """
    words = ["papermill", notebook, output]
    for name, value in parameters.items():
        if name.lower() == "token":
            continue
        if isinstance(value, bool) or isinstance(value, (int, float)) and not isinstance(value, bool):
            words += ["-p", name, str(value)]
        elif isinstance(value, str):
            words += ["-r", name, value]
        else:
            words += ["-y", json.dumps({name: value})]
    return " ".join(shlex.quote(word) for word in words)


#: Parameter names that hold a file or folder of the run (``scw_table_file``, ``output_dir``, ...).
_PATH_PARAMETER = re.compile(r"(_file|_dir|_folder|_path)$", re.IGNORECASE)
#: Values that are paths of the machine that ran the notebook (POSIX, home, Windows drive or UNC).
_ABSOLUTE_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


def portable_parameters(parameters: dict, *, output_dir: str) -> tuple[dict, list[dict]]:
    """A run's parameters made to rerun on any machine without touching the original's products.

    ``output_dir`` becomes ``output_dir`` (a new folder, relative to where the command is run); a
    parameter naming a file or folder of the original run (``*_file``, ``*_dir``, ``*_folder``,
    ``*_path``, or any absolute path) is emptied, so that the notebook does that step itself (ScW
    selection, source catalogue) or goes without it (a Crab calibration); ``upload_to_gallery``
    becomes False, so that the rerun cannot replace the product in the gallery. The token is
    left out.

    Parameters
    ----------
    parameters : dict
        The run's parameters (papermill's record).
    output_dir : str
        The rerun's output folder.

    Returns
    -------
    (dict, list of dict)
        The parameters, and what was changed: ``{"name", "was", "now"}``.
    """
    portable, changed = {}, []
    for name, value in parameters.items():
        if name.lower() == "token":
            continue
        new = value
        if name == "output_dir":
            new = output_dir
        elif name == "upload_to_gallery" and value:
            new = False
        elif isinstance(value, str) and value and (_PATH_PARAMETER.search(name) or _ABSOLUTE_PATH.match(value)):
            new = ""
        if new != value or name == "output_dir":
            changed.append({"name": name, "was": value, "now": new})
        portable[name] = new
    if "output_dir" not in portable:
        portable["output_dir"] = output_dir
        changed.append({"name": "output_dir", "was": None, "now": output_dir})
    return portable, changed


def js9_directory() -> Path | None:
    """The folder JS9 is served from, or None when it is missing (the product pages then keep the older viewer).

    ``$MMODA_LOCAL_JS9_DIR`` when set, else the ``js9`` npm package that ``make setup`` installs
    (``npm ci`` in ``gallery_assets/js9``, pinned by its ``package-lock.json``).

    Returns
    -------
    pathlib.Path or None
        A folder holding at least JS9's scripts, styles and FITS library (:data:`JS9_FILES`).
    """
    folder = Path(os.environ.get(JS9_ENVIRONMENT) or JS9_PACKAGE)
    required = [*JS9_FILES[:5], "astroemw.js", "astroemw.wasm"]
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        log.warning(
            "gallery: JS9 is missing from %s (%s): product pages show FITS images without it; run `make setup` "
            "(npm ci in %s) or set $%s",
            folder,
            ", ".join(missing),
            ASSETS / "js9",
            JS9_ENVIRONMENT,
        )
        return None
    return folder


# -- page model -------------------------------------------------------------------------------------------------
class ProductView:
    """What a product page shows, read from the product's files (built once per product version).

    Parameters
    ----------
    store : GalleryStore
        Where the product's files are.
    product : dict
        The product (:meth:`GalleryStore.product`).
    """

    def __init__(self, store, product: dict):
        self.product = product
        self.simulated = bool(product["simulated"])
        self.sources: list[dict] = []
        self.sources_origin = ""
        self.notebooks: list[dict] = []
        self.parameters: list[dict] = []
        self.plots = []
        self.plot_kinds: list[str] = []
        self.errors: list[str] = []
        #: The FITS image JS9 shows: ``{"file": record, "hdu": index, "what": "significance"...}``, or None.
        self.fits_image: dict | None = None
        files = product["files"]
        fits_files = []
        for record in files:
            data = store.read_file(record["fid"])
            if record["kind"] == "fits":
                hdul = open_fits(data)
                if hdul is not None:
                    fits_files.append((record, hdul))
            elif record["kind"] == "notebook":
                info = notebook_info(data)
                info["file"] = record
                info["notebook"] = source_notebook(
                    info["input_path"] or produced_by(product["fields"]), record["filename"]
                )
                if info["parameters"] is not None:
                    # a new folder, relative to where the command runs; the notebook comes from this gallery
                    stem = Path(info["notebook"]).stem
                    folder = f"{stem}_rerun_{product['nid']}"
                    portable, info["changed"] = portable_parameters(info["parameters"], output_dir=folder)
                    source = url_for("gallery.download", fid=record["fid"], name=record["filename"], _external=True)
                    info["command"] = rerun_command(source, portable, output=f"{folder}.ipynb")
                    info["command_checkout"] = rerun_command(info["notebook"], portable, output=f"{folder}.ipynb")
                    output_path = str(info["output_path"] or "").replace("\\", "/")
                    marker = output_path.rfind("outputs/")
                    if marker >= 0:
                        info["run_all"] = f"python run_all.py rerun {shlex.quote(output_path[marker:])}"
                self.notebooks.append(info)
            elif record["kind"] in ("yaml", "json"):
                parameters = parameters_from_yaml(data)
                if parameters is not None:
                    self.parameters.append({"file": record, "values": parameters})
            elif record["kind"] == "table" and not self.sources:
                table = read_table(data, record["filename"])
                if table is not None:
                    self.sources = sources_from_table(table)
                    self.sources_origin = record["filename"] if self.sources else ""
        regions = []
        for record in files:
            if record["kind"] == "region":
                regions += sources_from_region(decompressed(store.read_file(record["fid"])).decode("utf-8", "replace"))
        if not self.sources and product["fields"].get("detected_sources"):
            self.sources = sources_from_html(product["fields"]["detected_sources"])
            self.sources_origin = "the detected sources posted with the product" if self.sources else ""
        if not self.sources:
            for record, hdul in fits_files:
                for hdu in hdul:
                    if (
                        getattr(hdu, "columns", None) is not None
                        and lightcurve_hdu([hdu]) is None
                        and spectrum_hdu([hdu]) is None
                        and ebounds([[hdu]]) is None
                    ):
                        from astropy.table import Table

                        rows = sources_from_table(Table(hdu.data))
                        if rows:
                            self.sources, self.sources_origin = rows, record["filename"]
                            break
        if not self.sources and regions:
            self.sources, self.sources_origin = regions, "region file"
        elif regions:
            # the region file's circles (sizes, colours) go with the table's fluxes
            by_name = {r["name"]: r for r in regions}
            for row in self.sources:
                if row["name"] in by_name:
                    row["radius_deg"] = by_name[row["name"]].get("radius_deg")
                    row["color"] = by_name[row["name"]].get("color")
        if not self.sources:
            self.sources = [
                {
                    "name": e["name"],
                    "ra": e["ra"],
                    "dec": e["dec"],
                    "flux": None,
                    "flux_error": None,
                    "significance": None,
                    "unit": "",
                }
                for e in product["sources"]
                if e["ra"] is not None and e["dec"] is not None
            ]
            self.sources_origin = "source positions" if self.sources else ""
        title = product["title"]
        all_hdul = [hdul for _record, hdul in fits_files]
        bounds = ebounds(all_hdul)
        try:
            folding = response(all_hdul)
        except Exception as exc:  # noqa: BLE001 - an unreadable response leaves the spectrum without its fit
            log.warning("gallery: cannot read the spectral response: %s", exc)
            folding = None
        for record, hdul in fits_files:
            try:
                found = image_hdu_index(hdul)
            except Exception as exc:  # noqa: BLE001 - an unreadable file has no image to show
                log.warning("gallery: cannot read the images of %s: %s", record["filename"], exc)
                found = None
            if found is not None:
                self.fits_image = {"file": record, "hdu": found[0], "what": found[1]}
                break
        for record, hdul in fits_files:
            try:
                image = image_plot(hdul, self.sources, title=title, simulated=self.simulated)
                if image is not None:
                    self.plots.append(image)
                    self.plot_kinds.append("image")
                    continue
                lc = lightcurve_hdu(hdul)
                if lc is not None:
                    self.plots.append(lightcurve_plot(lc, title=title, simulated=self.simulated))
                    self.plot_kinds.append("lightcurve")
                    continue
                pha = spectrum_hdu(hdul)
                if pha is not None:
                    self.plots.append(
                        spectrum_plot(pha, bounds, title=title, simulated=self.simulated, folding=folding)
                    )
                    self.plot_kinds.append("spectrum")
            except Exception as exc:  # noqa: BLE001 - one unreadable file must not hide the rest of the page
                log.warning("gallery: cannot plot %s: %s", record["filename"], exc)
                self.errors.append(f"{record['filename']}: cannot be plotted ({type(exc).__name__})")
        self.components = None
        if self.plots:
            from bokeh.embed import components

            script, divs = components(self.plots)
            self.components = {"script": script, "divs": list(zip(self.plot_kinds, divs))}


class _ViewCache:
    """Product views by (nid, changed, revision): a product page is computed once per version."""

    def __init__(self, size: int = 32):
        self.size = size
        self._views: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store, product: dict) -> ProductView:
        key = (product["nid"], product["changed"], product["revision"])
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
        view = ProductView(store, product)
        with self._lock:
            self._views[key] = view
            while len(self._views) > self.size:
                self._views.popitem(last=False)
        return view


# -- formatting helpers for the templates -----------------------------------------------------------------------
def file_url(record: dict) -> str:
    """The download URL of a stored file."""
    return url_for("gallery.download", fid=record["fid"], name=record["filename"])


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n} B"


def _short(text, length: int = 30) -> str:
    text = str(text or "")
    return text if len(text) <= length else text[: length - 1] + "…"


def _rev_span(product: dict) -> str:
    if product.get("rev1") is None:
        return ""
    return f"{product['rev1']} - {product['rev2'] if product['rev2'] is not None else product['rev1']}"


def _number(value, fmt: str = "{:.4g}") -> str:
    return "" if value is None else fmt.format(value)


@functools.lru_cache(maxsize=4)
def _bokeh_scripts(root: str) -> str:
    from bokeh.resources import Resources

    # served from the installed bokeh package: no CDN, works offline
    return Resources(mode="server", root_url=root, components=["bokeh"]).render_js()


# -- the blueprint ----------------------------------------------------------------------------------------------
blueprint = Blueprint(
    "gallery",
    __name__,
    url_prefix="/gallery",
    template_folder=str(ASSETS / "templates"),
    static_folder=str(ASSETS / "static"),
    static_url_path="/static",
)


@blueprint.record_once
def _new_view_cache(state) -> None:
    # one cache per application: two servers in one process have different stores with the same node ids
    state.app.extensions[VIEWS_EXTENSION] = _ViewCache()
    # looked for once, when the server starts: a missing JS9 is said in the log and on the product pages
    state.app.extensions[JS9_EXTENSION] = js9_directory()


def _store() -> GalleryStore:
    return current_backend().gallery


@blueprint.app_template_filter("short")
def short_filter(text, length: int = 30) -> str:
    """Template filter: a text cut to ``length`` characters with an ellipsis."""
    return _short(text, length)


@blueprint.app_template_filter("literal")
def literal_filter(value) -> str:
    """Template filter: a parameter value as it would be written (JSON); Jinja escapes it for HTML afterwards."""
    return json.dumps(value, ensure_ascii=False, default=str)


@blueprint.context_processor
def helpers() -> dict:
    """Functions and texts the templates use."""
    return {
        "file_url": file_url,
        "size": _size,
        "rev_span": _rev_span,
        "number": _number,
        "instrument_label": lambda name: INSTRUMENT_LABELS.get(name or "", name or ""),
        "family_label": lambda name: FAMILY_LABELS.get(name or "", name or ""),
        "simulated_text": SIMULATED_TEXT,
        "quote": lambda text: quote(str(text), safe=""),
    }


def _listing(products: list[dict], *, heading: str, **context):
    simulated = sum(1 for p in products if p["simulated"])
    try:
        page = max(1, int(request.args.get("page", 1)))
    except ValueError:
        page = 1
    pages = max(1, math.ceil(len(products) / PAGE_SIZE))
    page = min(page, pages)
    shown = products[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    arguments = {k: v for k, v in request.args.items() if k != "page"}
    links = (
        {
            number: url_for(request.endpoint, **{**arguments, **(request.view_args or {}), "page": number})
            for number in range(1, pages + 1)
        }
        if pages > 1
        else {}
    )
    return render_template(
        "gallery/list.html",
        products=shown,
        matched=len(products),
        heading=heading,
        simulated_count=simulated,
        page=page,
        page_links=links,
        **context,
    )


@blueprint.route("/")
def index():
    """All products, newest first, filtered by instrument, product type, time span, source and revolution."""
    store = _store()
    arguments = {k: v.strip() for k, v in request.args.items() if v and v.strip()}
    conditions = {key: arguments.get(key) for key in ("instrument", "product_type", "src_name", "t1", "t2")}
    products = store.products(**conditions)
    rev = arguments.get("rev")
    if rev is not None:
        try:
            wanted = int(rev)
        except ValueError:
            wanted = None
        products = [
            p
            for p in products
            if wanted is not None
            and p["rev1"] is not None
            and p["rev1"] <= wanted <= (p["rev2"] if p["rev2"] is not None else p["rev1"])
        ]
    every = store.products()
    instruments = sorted({p["instrument"] for p in every if p["instrument"]} | {"isgri", "jemx1", "jemx2"})
    types = sorted({p["product_type"] for p in every if p["product_type"]})
    return _listing(
        products,
        heading="Products",
        filters=arguments,
        instruments=instruments,
        product_types=types,
        entities=store.entities(),
        show_filters=True,
        total=len(every),
    )


@blueprint.route("/product/<int:nid>")
def product_page(nid: int):
    """One product: its plots, sources, files and the notebook that made it."""
    store = _store()
    product = store.product(nid)
    if product is None:
        abort(404)
    view = current_app.extensions[VIEWS_EXTENSION].get(store, product)
    others = {
        k: v
        for k, v in product["fields"].items()
        if k
        not in (
            "instrument",
            "product_type",
            "src_name",
            "t1",
            "t2",
            "e1_kev",
            "e2_kev",
            "ra",
            "dec",
            "product_id",
            "in_evidence",
            "detected_sources",
            "additional_information",
        )
    }
    scripts = _bokeh_scripts(url_for("gallery.index") + "bokeh/") if view.components else ""
    js9 = None
    if view.fits_image is not None:
        image = view.fits_image
        js9 = {
            "available": current_app.extensions.get(JS9_EXTENSION) is not None,
            # JS9 fetches the file itself and opens HDU ``[n]`` of it (cfitsio's extended file name)
            "url": f"{file_url(image['file'])}[{image['hdu']}]",
            "hdu": image["hdu"],
            "what": image["what"],
            "filename": image["file"]["filename"],
            "regions": [
                {"name": s["name"], "ra": s["ra"], "dec": s["dec"], "radius_deg": s.get("radius_deg")}
                for s in view.sources
                if s.get("ra") is not None and s.get("dec") is not None
            ],
        }
    return render_template(
        "gallery/product.html", product=product, view=view, other_fields=others, bokeh_scripts=scripts, js9=js9
    )


@blueprint.route("/node/<int:nid>")
def node(nid: int):
    """A node: HAL-JSON with ``?_format=hal_json`` (the links oda_api logs), else its page."""
    store = _store()
    record = store.node(nid)
    if record is None:
        abort(404)
    if request.args.get("_format") == "hal_json":
        return Response(json.dumps(hal_node(store, nid, site_url())), mimetype="application/hal+json")
    if record["bundle"] == "data_product":
        return redirect(url_for("gallery.product_page", nid=nid))
    if record["bundle"] == "astro_entity":
        return redirect(url_for("gallery.source_page", name=record["title"]))
    return redirect(url_for("gallery.observation_page", nid=nid))


@blueprint.route("/observation/<int:nid>")
def observation_page(nid: int):
    """An observation's products."""
    store = _store()
    observation = store.observation(nid=nid)
    if observation is None:
        abort(404)
    products = [p for p in store.products() if p["observation_nid"] == nid]
    return _listing(products, heading=f"Observation {observation['title']}", observation=observation)


@blueprint.route("/taxonomy/term/<int:tid>")
def term(tid: int):
    """A taxonomy term (instrument or product type) as HAL-JSON."""
    for vocabulary, names in (("instruments", INSTRUMENTS), ("products", product_terms())):
        for name in names:
            if term_id(vocabulary, name) == tid:
                return Response(
                    json.dumps(
                        {"tid": [{"value": tid}], "name": [{"value": name}], "vid": [{"target_id": vocabulary}]}
                    ),
                    mimetype="application/hal+json",
                )
    abort(404)


@blueprint.route("/sources")
def sources_page():
    """The sources, filtered by name and object type, with their product counts."""
    store = _store()
    name = (request.args.get("name") or "").strip()
    kind = (request.args.get("object_type") or "").strip()
    counts: dict[int, int] = {}
    for product in store.products():
        for entity in product["sources"]:
            counts[entity["nid"]] = counts.get(entity["nid"], 0) + 1
    entities = store.entities()
    types = sorted({e["object_type"] for e in entities if e["object_type"]})
    if name:
        key = normalised_name(name)
        entities = [
            e
            for e in entities
            if key in normalised_name(e["name"]) or any(key in normalised_name(alias) for alias in e["object_ids"])
        ]
    if kind:
        entities = [e for e in entities if (e["object_type"] or "") == kind]
    any_simulated = any(p["simulated"] for p in store.products())
    return render_template(
        "gallery/sources.html",
        entities=entities,
        counts=counts,
        name=name,
        kind=kind,
        types=types,
        any_simulated=any_simulated,
    )


@blueprint.route("/source/<path:name>")
def source_page(name: str):
    """One source's products, those put in evidence first."""
    store = _store()
    entity = store.entity(name)
    products = store.products(src_name=name)
    if entity is None and not products:
        abort(404)
    products.sort(key=lambda p: -int(p["in_evidence"] or 0))
    return _listing(products, heading=entity["name"] if entity else name, entity=entity)


@blueprint.route("/revolutions")
def revolutions_page():
    """The revolutions having products."""
    store = _store()
    if request.args.get("rev"):
        try:
            return redirect(url_for("gallery.revolution_page", rev=int(request.args["rev"])))
        except ValueError:
            pass
    return render_template(
        "gallery/revolutions.html",
        revolutions=store.revolutions(),
        any_simulated=any(p["simulated"] for p in store.products()),
    )


@blueprint.route("/revolution/<int:rev>")
def revolution_page(rev: int):
    """The products of one revolution, with instrument and product-type tabs."""
    instrument = request.args.get("instrument") or None
    family = request.args.get("product_type") or None
    # products of this revolution: those spanning at most two revolutions (long-term ones would be everywhere)
    products = [
        p
        for p in _store().products(instrument=instrument, product_type=family)
        if p["rev1"] is not None
        and p["rev1"] <= rev <= (p["rev2"] if p["rev2"] is not None else p["rev1"])
        and (p["rev2"] if p["rev2"] is not None else p["rev1"]) - p["rev1"] <= 1
    ]
    return _listing(
        products, heading=f"Revolution {rev}", revolution=rev, tab_instrument=instrument or "", tab_type=family or ""
    )


@blueprint.route("/files/<int:fid>/<path:name>")
def download(fid: int, name: str):
    """An attached file (shown inline when a browser can show it safely)."""
    record = _store().file(fid)
    if record is None or not Path(record["path"]).exists():
        abort(404)
    mimetypes = {
        "image": None,
        "fits": "application/fits",
        "region": "text/plain",
        "yaml": "text/plain",
        "table": "text/plain",
        "text": "text/plain",
        "json": "application/json",
        "notebook": "application/x-ipynb+json",
    }
    inline = record["kind"] in ("image", "region", "yaml", "table", "text", "json")
    response = send_file(
        record["path"],
        mimetype=mimetypes.get(record["kind"]),
        as_attachment=not inline,
        download_name=record["filename"],
        max_age=300,
    )
    # uploaded HTML or SVG must not run scripts in the gallery's origin
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.route("/js9/<path:filename>")
def js9_static(filename: str):
    """JS9's files (:data:`JS9_FILES`, and the icons, fonts, forms and help of :data:`JS9_FOLDERS`), served locally.

    Nothing else of the npm package is served: not its Node helper, analysis wrappers, demos or
    ``node_modules``. 404 when JS9 is missing.
    """
    from flask import send_from_directory

    folder = current_app.extensions.get(JS9_EXTENSION)
    parts = filename.split("/")
    allowed = (len(parts) == 1 and filename in JS9_FILES) or (
        len(parts) > 1
        and parts[0] in JS9_FOLDERS
        and ".." not in parts
        and "node_modules" not in parts
        and filename.endswith(JS9_FOLDER_SUFFIXES)
    )
    if folder is None or not allowed:
        abort(404)
    mimetype = "application/wasm" if filename.endswith(".wasm") else None
    return send_from_directory(str(folder), filename, mimetype=mimetype, max_age=3600)


@blueprint.route("/bokeh/static/<path:filename>")
def bokeh_static(filename: str):
    """BokehJS from the installed ``bokeh`` package (the pages work offline)."""
    from bokeh.util.paths import bokehjsdir
    from flask import send_from_directory

    return send_from_directory(str(bokehjsdir()), filename, max_age=3600)
