"""The dispatcher's gallery endpoints (``post_product_to_gallery``, ``get_data_product_list_...``...).

The real dispatcher checks the token and forwards to Drupal, whose answer comes back unchanged; here the
store (:mod:`mmoda_local.gallery_store`) stands for Drupal. Contract and routes: docs/gallery.md.
"""

from __future__ import annotations

import datetime as _dt
import json
from urllib.parse import quote

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import auth
from .backend import current_backend
from .gallery_hal import hal_node, product_row, site_url
from .gallery_store import GalleryError, GalleryStore, Upload, json_list, parse_isot
from .gallery_terms import INSTRUMENTS, product_family, product_terms, resolve
from .responses import json_response, validate_token
from .scrubbing import clean_form

blueprint = Blueprint("gallery_api", __name__)

#: The role a token needs to write (and for most reads, as on the real dispatcher).
ROLE = auth.ROLE_GALLERY

#: The role that may change and delete other contributors' products.
ADMIN_ROLE = auth.ROLE_GALLERY_ADMIN

#: ``get_data_product_list_with_conditions`` arguments → :func:`mmoda_local.gallery_store.matches` conditions.
LIST_CONDITIONS = {
    "instrument_name": "instrument",
    "product_type": "product_type",
    "src_name": "src_name",
    "e1_kev_value": "e1_kev",
    "e2_kev_value": "e2_kev",
    "rev1_value": "rev1",
    "rev2_value": "rev2",
    "min_span_rev_value": "min_span_rev",
    "max_span_rev_value": "max_span_rev",
    "product_id_value": "product_id",
}


def _store() -> GalleryStore:
    return current_backend().gallery


def _guarded(action: str) -> tuple[dict | None, Response | None]:
    return validate_token(current_backend().secret, request.values.get("token"), required_roles=[ROLE], action=action)


def _failure(exc: GalleryError) -> Response:
    return json_response(
        {"error_message": exc.message, "drupal_helper_error_message": exc.detail or exc.message}, exc.status
    )


def _too_large(limit: int) -> Response:
    return _failure(
        GalleryError(
            "upload too large",
            status=413,
            detail=f"at most {limit} bytes ({limit / 2**20:g} MiB) per request to the product gallery",
        )
    )


@blueprint.before_request
def _limit_body() -> Response | None:
    """Refuse a write whose body passes the configured limit, counted as it streams in (chunked bodies too).

    The form is parsed here, before the token check reads it, under the request's own
    ``max_content_length``: werkzeug stops reading past it, with or without a ``Content-Length``.
    """
    if request.method != "POST":
        return None
    limit = int(current_backend().config.gallery_max_upload_bytes)
    request.max_content_length = limit
    try:
        request.form  # noqa: B018 - parsing the body is the point
        request.files  # noqa: B018
    except RequestEntityTooLarge:
        return _too_large(limit)
    return None


def _may_change(decoded: dict, product_id: str | None) -> Response | None:
    """None when the token's owner may change the product ``product_id`` (new, theirs, or an admin); else a 403."""
    if not product_id:
        return None
    owner = _store().product_owner(product_id)
    if owner is None:  # no such product: posting creates it
        return None
    if ADMIN_ROLE in auth.roles_of(decoded) or (owner["author"] and owner["author"] == _identity(decoded)):
        return None
    return _failure(
        GalleryError(
            "forbidden",
            status=403,
            detail=f"the product {product_id} belongs to another contributor: only its author, or a token "
            f"with the role '{ADMIN_ROLE}', may change or delete it",
        )
    )


def _identity(decoded: dict) -> str | None:
    """Who a token stands for: its e-mail, else its subject."""
    return decoded.get("email") or decoded.get("sub")


def _uploads() -> list[Upload]:
    return [Upload(part, storage.filename or part, storage.read()) for part, storage in request.files.items(multi=True)]


def list_conditions(arguments: dict) -> dict:
    """The product-list conditions of a request's arguments (empty and ``None`` values left out).

    Parameters
    ----------
    arguments : dict
        The request's values.

    Returns
    -------
    dict
        Keyword arguments of :meth:`mmoda_local.gallery_store.GalleryStore.products`.
    """
    conditions = {}
    for key, value in arguments.items():
        if key in LIST_CONDITIONS and value not in (None, "", "None"):
            conditions[LIST_CONDITIONS[key]] = value
    return conditions


# -- writes -----------------------------------------------------------------------------------------------------
@blueprint.route("/post_product_to_gallery", methods=["POST"])
def post_product_to_gallery():
    """Create a data product, or update the one with the same ``product_id``: its HAL node."""
    decoded, denied = _guarded("post on the product gallery")
    if denied:
        return denied
    token = request.values.get("token", "")
    form, _dropped = clean_form(request.values.to_dict(), secrets=[token])
    content_type = str(form.get("content_type", "article")).lower()
    if content_type != "data_product":
        return _failure(
            GalleryError(
                f"content_type {content_type!r} cannot be posted here",
                detail="error while posting content: only data_product is supported",
            )
        )
    refused = _may_change(decoded, form.get("product_id") or None)
    if refused:
        return refused
    uploads = _uploads()
    store = _store()
    try:
        nid, _updated = store.post_product(form, uploads, secrets=[token], author=_identity(decoded))
        return json_response(hal_node(store, nid, site_url()))
    except GalleryError as exc:
        return _failure(exc)


@blueprint.route("/delete_product_to_gallery", methods=["POST"])
def delete_product_to_gallery():
    """Delete the product with a ``product_id``."""
    decoded, denied = _guarded("delete from the product gallery")
    if denied:
        return denied
    product_id = request.values.get("product_id")
    refused = _may_change(decoded, product_id)
    if refused:
        return refused
    if product_id and _store().delete_product(product_id):
        return json_response({})
    return json_response(
        {
            "output_message": f"no data-product with product_id {product_id} has been found, "
            "no data-product deletion will take place"
        }
    )


@blueprint.route("/post_observation_to_gallery", methods=["POST"])
def post_observation_to_gallery():
    """Create or update an observation: its HAL node (``{}`` when nothing was done)."""
    decoded, denied = _guarded("post on the product gallery")
    if denied:
        return denied
    token = request.values.get("token", "")
    form, _dropped = clean_form(request.values.to_dict(), secrets=[token])
    uploads = _uploads()
    store = _store()
    nid = store.post_observation(
        title=form.get("title"),
        t1=form.get("T1"),
        t2=form.get("T2"),
        obsids=form.get("obsid"),
        uploads=uploads,
        secrets=[token],
        update=form.get("update_observation", "False") == "True",
        create_new=form.get("create_new", "False") == "True",
        author=decoded.get("email"),
    )
    return json_response(hal_node(store, nid, site_url()) if nid is not None else {})


@blueprint.route("/post_astro_entity_to_gallery", methods=["POST"])
def post_astro_entity_to_gallery():
    """Create or update a source (astrophysical entity): its HAL node."""
    _decoded, denied = _guarded("post on the product gallery")
    if denied:
        return denied
    form, _dropped = clean_form(request.values.to_dict(), secrets=[request.values.get("token", "")])
    name = (form.get("src_name") or "").strip()
    if not name:
        return _failure(GalleryError("Request data not found", detail="a src_name is needed"))
    store = _store()
    update = form.get("update_astro_entity", "False") == "True"
    if update and store.entity(name) is None:
        return _failure(
            GalleryError(
                "Request data not found",
                detail="error while updating astrophysical and entity product: no "
                "correspondent entity could be found with the provided name",
            )
        )
    details = dict(
        ra=form.get("source_ra"),
        dec=form.get("source_dec"),
        object_type=form.get("object_type"),
        link=form.get("src_portal_link"),
        object_ids=json_list(form.get("object_ids"), what="object_ids"),
    )
    if form.get("auto_update", "False") == "True":
        resolved = resolve(name, portal=site_url())
        details = dict(
            ra=resolved.get("RA"),
            dec=resolved.get("DEC"),
            object_type=resolved.get("object_type"),
            link=resolved.get("entity_portal_link"),
            object_ids=resolved.get("object_ids"),
        )
    nid = store.upsert_entity(name, update=True, **details)
    return json_response(hal_node(store, nid, site_url()))


# -- vocabularies and names -------------------------------------------------------------------------------------
@blueprint.route("/get_parents_term", methods=["GET"])
def get_parents_term():
    """The parents of a product-type term, e.g. ``["image", "isgri_image"]``."""
    _decoded, denied = _guarded("post on the product gallery")
    if denied:
        return denied
    term = request.values.get("term")
    family = product_family(term)
    if not term or family is None:
        return json_response([])
    return json_response([family] if family == term.lower() else [family, term])


@blueprint.route("/get_list_terms", methods=["GET"])
def get_list_terms():
    """The terms of a vocabulary: instruments, product types (of an instrument), sources."""
    _decoded, denied = _guarded("post on the product gallery")
    if denied:
        return denied
    group = (request.values.get("group") or "").lower()
    if group == "instruments":
        return json_response(list(INSTRUMENTS))
    if group == "products":
        return json_response(product_terms(request.values.get("parent")))
    if group == "sources":
        return json_response([entity["name"] for entity in _store().entities()])
    return json_response([])


@blueprint.route("/resolve_name", methods=["GET"])
def resolve_name():
    """A source name resolved from the simulated sky's catalogue."""
    return json_response(resolve(request.values.get("name"), portal=site_url()))


@blueprint.route("/get_revnum", methods=["GET"])
def get_revnum():
    """``{"revnum": n}``: the revolution at ``time_to_convert`` (now by default)."""
    raw = request.values.get("time_to_convert")
    when = parse_isot(raw) if raw else _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if when is None:
        return json_response({})
    number = current_backend().revnum(when)
    if number is None:
        return _failure(
            GalleryError(
                "issue when performing a request to the timesystem service",
                status=500,
                detail=f"conversion impossible: {when} is outside the mission",
            )
        )
    return json_response({"revnum": number})


# -- lists ------------------------------------------------------------------------------------------------------
@blueprint.route("/get_data_product_list_with_conditions", methods=["GET"])
def get_data_product_list_with_conditions():
    """Products meeting the conditions, as Drupal view rows."""
    token = request.values.get("token")
    if token not in (None, ""):
        _decoded, denied = validate_token(
            current_backend().secret, token, action="getting all the astro entities from the product gallery"
        )
        if denied:
            return denied
    site = site_url()
    try:
        found = _store().products(**list_conditions(request.values.to_dict()))
    except ValueError as exc:
        return _failure(
            GalleryError("issue when performing a request to the product gallery", status=500, detail=str(exc))
        )
    return json_response([product_row(p, site) for p in found])


@blueprint.route("/get_data_product_list_by_source_name", methods=["GET"])
def get_data_product_list_by_source_name():
    """Products of one source (name or alternative name), as Drupal view rows."""
    token = request.values.get("token")
    if token not in (None, ""):
        _decoded, denied = validate_token(
            current_backend().secret,
            token,
            required_roles=[ROLE],
            action="getting all the astro entities from the product gallery",
        )
        if denied:
            return denied
    name = request.values.get("src_name")
    site = site_url()
    return json_response([product_row(p, site) for p in _store().products(src_name=name)] if name else [])


@blueprint.route("/get_observation_attachments", methods=["GET"])
def get_observation_attachments():
    """``{"title": ..., "file_content": ...}``: the text files of an observation."""
    _decoded, denied = _guarded("post on the product gallery")
    if denied:
        return denied
    store = _store()
    observation = store.observation(title=request.values.get("title"))
    if observation is None:
        return json_response({})
    # the observation's own attachments, and (as Drupal attaches them to the observation) the YAML
    # files posted with its products
    files = list(observation["files"])
    for product in store.products():
        if product["observation_nid"] == observation["nid"]:
            files += [f for f in product["files"] if f["field"] == "yaml_file"]
    contents = [store.read_file(f["fid"]).decode("utf-8", "replace") for f in files if f["kind"] in ("yaml", "text")]
    return json_response(
        {
            "title": observation["title"],
            "nid": str(observation["nid"]),
            "file_content": "".join(json.dumps({"single_file_content": c}) for c in contents),
        }
    )


@blueprint.route("/get_all_revs", methods=["GET"])
def get_all_revs():
    """The revolutions having products, newest first."""
    _decoded, denied = _guarded("getting all the revolutions from the product gallery")
    if denied:
        return denied
    return json_response([str(r["rev"]) for r in _store().revolutions()])


@blueprint.route("/get_all_astro_entities", methods=["GET"])
def get_all_astro_entities():
    """Every source: title, RA, Dec."""
    _decoded, denied = _guarded("getting all the astro entities from the product gallery")
    if denied:
        return denied
    return json_response(
        [
            {
                "title": e["name"],
                "ra": "" if e["ra"] is None else str(e["ra"]),
                "dec": "" if e["dec"] is None else str(e["dec"]),
            }
            for e in _store().entities()
        ]
    )


@blueprint.route("/get_astro_entity_info_by_source_name", methods=["GET"])
def get_astro_entity_info_by_source_name():
    """One source's fields, without ``field_``."""
    name = request.values.get("src_name")
    entity = _store().entity(name) if name else None
    if entity is None:
        return json_response({})
    return json_response(
        {
            "nid": str(entity["nid"]),
            "title": entity["name"],
            "source_name": entity["name"],
            "source_ra": "" if entity["ra"] is None else str(entity["ra"]),
            "source_dec": "" if entity["dec"] is None else str(entity["dec"]),
            "object_type": entity["object_type"] or "",
            "link": entity["link"] or "",
            "alternative_names_long_str": ",".join(entity["object_ids"]),
            "url_preview": f"{site_url()}/source/{quote(entity['name'], safe='')}",
        }
    )
