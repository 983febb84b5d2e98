"""Gallery nodes as Drupal serialises them: HAL-JSON nodes and the rows of its views."""

from __future__ import annotations

import datetime as _dt
from urllib.parse import quote

from flask import request

from .gallery_store import GalleryError, GalleryStore
from .gallery_terms import INSTRUMENTS, term_id

#: Drupal's HAL-JSON link relations live under ``<gallery>/rest/relation/node/<bundle>/<field>``.
RELATION = "rest/relation/node/{bundle}/{field}"

#: Drupal's time stamps.
DRUPAL_TIME = "%Y-%m-%dT%H:%M:%S+00:00"


def drupal_time(seconds: float) -> str:
    """Drupal's time stamp (``2024-01-01T00:00:00+00:00``) of a Unix time.

    Parameters
    ----------
    seconds : float
        Unix time.

    Returns
    -------
    str
    """
    return _dt.datetime.fromtimestamp(int(seconds), tz=_dt.UTC).strftime(DRUPAL_TIME)


def site_url() -> str:
    """Base URL of the gallery website for the current request.

    Returns
    -------
    str
        ``http://host:port/gallery`` as the client reached the server.
    """
    return request.host_url.rstrip("/") + request.script_root + "/gallery"


def _value(value) -> list[dict]:
    return [{"value": value}]


def hal_node(store: GalleryStore, nid: int, site: str) -> dict:
    """A node as Drupal's HAL-JSON serialisation (what the dispatcher returns to oda_api).

    Parameters
    ----------
    store : GalleryStore
        Where the node is.
    nid : int
        The node.
    site : str
        Base URL of the gallery (``http://host:port/gallery``); links are
        built under it as Drupal builds them under its own URL.

    Returns
    -------
    dict

    Raises
    ------
    GalleryError
        404 when there is no such node.
    """
    node = store.node(nid)
    if node is None:
        raise GalleryError(f"no node {nid}", status=404)
    bundle = node["bundle"]
    relation = lambda field: f"{site}/{RELATION.format(bundle=bundle, field=field)}"  # noqa: E731
    links = {
        "self": {"href": f"{site}/node/{nid}?_format=hal_json"},
        "type": {"href": f"{site}/rest/type/node/{bundle}"},
    }
    embedded: dict[str, list] = {}
    body = {
        "nid": _value(nid),
        "uuid": _value(node["uuid"]),
        "vid": _value(node["revision"]),
        "langcode": [{"value": "en", "lang": "en"}],
        "type": [{"target_id": bundle}],
        "revision_timestamp": [{"value": drupal_time(node["changed"])}],
        "status": [{"value": True, "lang": "en"}],
        "title": [{"value": node["title"], "lang": "en"}],
        "created": [{"value": drupal_time(node["created"]), "lang": "en"}],
        "changed": [{"value": drupal_time(node["changed"]), "lang": "en"}],
        "promote": [{"value": False, "lang": "en"}],
        "sticky": [{"value": False, "lang": "en"}],
        "body": [{"value": "", "format": "full_html", "summary": "", "lang": "en"}],
    }

    def relate(field: str, href: str, uuid_value: str | None = None):
        links.setdefault(relation(field), []).append({"href": href})
        embedded.setdefault(relation(field), []).append(
            {"_links": {"self": {"href": href}}, **({"uuid": _value(uuid_value)} if uuid_value else {})}
        )

    def relate_files(records):
        for record in records:
            field = "field_" + record["field"]
            relate(field, f"{site}/files/{record['fid']}/{quote(record['filename'])}")

    if bundle == "data_product":
        product = store.product(nid)
        for key, value in product["fields"].items():
            if key in ("instrument", "product_type"):
                continue
            body["field_" + key] = _value(value)
        if product["instrument"] in INSTRUMENTS:
            relate(
                "field_instrumentused",
                f"{site}/taxonomy/term/{term_id('instruments', product['instrument'])}?_format=hal_json",
            )
        if product["family"] is not None:
            relate(
                "field_data_product_type",
                f"{site}/taxonomy/term/{term_id('products', product['product_type'])}?_format=hal_json",
            )
        if product["observation_nid"] is not None:
            relate("field_derived_from_observation", f"{site}/node/{product['observation_nid']}?_format=hal_json")
        for entity in product["sources"]:
            relate("field_describes_astro_entity", f"{site}/node/{entity['nid']}?_format=hal_json", entity["uuid"])
        relate_files(product["files"])
    elif bundle == "observation":
        observation = store.observation(nid=nid)
        if observation["t1"] and observation["t2"]:
            body["field_timerange"] = [{"value": observation["t1"], "end_value": observation["t2"]}]
        for name in ("rev1", "rev2"):
            if observation[name] is not None:
                body["field_" + name] = _value(observation[name])
        if observation["rev1"] is not None and observation["rev2"] is not None:
            body["field_span_rev"] = _value(observation["rev2"] - observation["rev1"])
        if observation["obsids"]:
            body["field_obsid"] = [{"value": o} for o in observation["obsids"]]
        for record in observation["files"]:
            relate("field_attachments", f"{site}/files/{record['fid']}/{quote(record['filename'])}")
    elif bundle == "astro_entity":
        entity = store.entity(node["title"])
        body["field_source_name"] = _value(entity["name"])
        for column, field in (
            ("ra", "field_source_ra"),
            ("dec", "field_source_dec"),
            ("object_type", "field_object_type"),
            ("link", "field_link"),
        ):
            if entity[column] is not None:
                body[field] = _value(entity[column])
        if entity["object_ids"]:
            body["field_alternative_names_long_str"] = _value(",".join(entity["object_ids"]))
    return {"_links": links, **body, "_embedded": embedded} if embedded else {"_links": links, **body}


def product_row(product: dict, site: str) -> dict:
    """A product as a row of the gallery's Drupal views (``field_`` prefixes stripped, values as text).

    Parameters
    ----------
    product : dict
        The product (:meth:`GalleryStore.product`).
    site : str
        Base URL of the gallery.

    Returns
    -------
    dict
    """

    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.10g}"
        return str(value)

    files = product["files"]
    image = next((f for f in files if f["field"] == "image_png"), None)
    span = "" if product["rev1"] is None or product["rev2"] is None else str(product["rev2"] - product["rev1"])
    return {
        "nid": str(product["nid"]),
        "uuid": product["uuid"],
        "title": product["title"],
        "created": drupal_time(product["created"]),
        "changed": drupal_time(product["changed"]),
        "url": f"{site}/product/{product['nid']}",
        "product_id": text(product["product_id"]),
        "instrumentused": text(product["instrument"]),
        "data_product_type": text(product["product_type"]),
        "src_name": ",".join(product["src_names"]),
        "describes_astro_entity": ",".join(e["name"] for e in product["sources"]),
        "ra": text(product["ra"]),
        "dec": text(product["dec"]),
        "e1_kev": text(product["e1_kev"]),
        "e2_kev": text(product["e2_kev"]),
        "t1": text(product["t1"]),
        "t2": text(product["t2"]),
        "rev1": text(product["rev1"]),
        "rev2": text(product["rev2"]),
        "span_rev": span,
        "obsid": text(product["obsids"]),
        "proposal_id": text(product["proposals"]),
        "in_evidence": text(product["in_evidence"]),
        "simulated": text(product["simulated"]),
        "image_png": f"{site}/files/{image['fid']}/{quote(image['filename'])}" if image else "",
        "fits_file": ",".join(
            f"{site}/files/{f['fid']}/{quote(f['filename'])}" for f in files if f["field"] == "fits_file"
        ),
    }
