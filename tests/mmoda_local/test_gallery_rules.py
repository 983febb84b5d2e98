"""Rules of the local gallery's writes: who may change a product, and how large an upload may be.

Ownership: a product belongs to the contributor whose token posted it (its e-mail); another
contributor's update or deletion is refused with 403, its author's and a ``gallery admin``'s
are accepted. Size: the body of a write is counted as it streams in, so a chunked body
without ``Content-Length`` is refused past the configured limit as well.
"""

from __future__ import annotations

import sqlite3

import pytest
import requests

from .test_gallery import client, make_product_set, post_product_set

pytestmark = pytest.mark.filterwarnings("ignore:Card is too long, comment will be truncated")


def _node(server, product_id: str):
    with sqlite3.connect(server.config.data_dir / "gallery" / "gallery.sqlite") as db:
        return db.execute(
            "SELECT n.nid, n.author, n.revision, n.title FROM data_products p JOIN nodes n USING (nid) "
            "WHERE p.product_id = ?",
            (product_id,),
        ).fetchone()


def test_a_contributor_changes_only_their_own_products_and_an_admin_any(server_factory, tmp_path):
    server = server_factory()
    alice = server.token("general, gallery contributor", email="alice@example.org")
    bob = server.token("general, gallery contributor", email="bob@example.org")
    admin = server.token("general, gallery contributor, gallery admin", email="admin@example.org")
    paths = make_product_set(tmp_path / "products")
    gallery = client(server.url)

    post_product_set(gallery, paths, alice, product_id="alice-mosaic", product_title="Alice's mosaic")
    assert _node(server, "alice-mosaic")[1:] == ("alice@example.org", 1, "Alice's mosaic")

    # another contributor: update and deletion refused with 403, the product untouched
    # (oda_api returns the dispatcher's error answer of a refused post)
    refused = post_product_set(gallery, paths, bob, product_id="alice-mosaic", product_title="Bob was here")
    assert refused["error_message"] == "forbidden"
    assert "belongs to another contributor" in refused["drupal_helper_error_message"]
    answer = requests.post(
        f"{server.url}/post_product_to_gallery",
        data={"token": bob, "content_type": "data_product", "product_id": "alice-mosaic", "product_title": "Bob"},
        timeout=10,
    )
    assert answer.status_code == 403
    answer = requests.post(
        f"{server.url}/delete_product_to_gallery", data={"token": bob, "product_id": "alice-mosaic"}, timeout=10
    )
    assert answer.status_code == 403 and "gallery admin" in answer.json()["drupal_helper_error_message"]
    assert _node(server, "alice-mosaic")[1:] == ("alice@example.org", 1, "Alice's mosaic")

    # its author: accepted
    post_product_set(gallery, paths, alice, product_id="alice-mosaic", product_title="Alice's mosaic, v2")
    assert _node(server, "alice-mosaic")[1:] == ("alice@example.org", 2, "Alice's mosaic, v2")

    # an admin: accepted, and the product stays its author's
    post_product_set(gallery, paths, admin, product_id="alice-mosaic", product_title="Alice's mosaic, fixed")
    assert _node(server, "alice-mosaic")[1:] == ("alice@example.org", 3, "Alice's mosaic, fixed")

    # bob's own product: his to delete; alice's: the admin's
    post_product_set(gallery, paths, bob, product_id="bob-mosaic", product_title="Bob's mosaic")
    answer = requests.post(
        f"{server.url}/delete_product_to_gallery", data={"token": bob, "product_id": "bob-mosaic"}, timeout=10
    )
    assert answer.status_code == 200 and answer.json() == {} and _node(server, "bob-mosaic") is None
    answer = requests.post(
        f"{server.url}/delete_product_to_gallery", data={"token": admin, "product_id": "alice-mosaic"}, timeout=10
    )
    assert answer.status_code == 200 and answer.json() == {} and _node(server, "alice-mosaic") is None


def _chunks(total: int, *, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        block = min(size, total - sent)
        sent += block
        yield b"x" * block


def _multipart(token: str, payload_bytes: int, boundary: str = "gallery-test-boundary"):
    """A multipart body (token, product fields, one large file part) as a generator: sent chunked."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="token"\r\n\r\n{token}\r\n'
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="content_type"\r\n\r\ndata_product\r\n'
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="product_id"\r\n\r\nbig-one\r\n'
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="fits_file_0"; filename="big.fits"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    yield head
    yield from _chunks(payload_bytes)
    yield f"\r\n--{boundary}--\r\n".encode()


def test_the_upload_limit_holds_for_chunked_bodies(server_factory):
    limit = 256 * 1024
    server = server_factory(gallery_max_upload_bytes=limit)
    token = server.token("general, gallery contributor", email="alice@example.org")
    headers = {"Content-Type": "multipart/form-data; boundary=gallery-test-boundary"}

    # chunked (no Content-Length), four times the limit: 413, nothing stored
    answer = requests.post(
        f"{server.url}/post_product_to_gallery", data=_multipart(token, 4 * limit), headers=headers, timeout=60
    )
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in answer.request.headers
    assert answer.status_code == 413, answer.text
    assert answer.json()["error_message"] == "upload too large"
    assert _node(server, "big-one") is None
    assert not any((server.config.data_dir / "gallery" / "files").rglob("*big.fits"))

    # with a Content-Length above the limit: 413 as well
    body = b"".join(_multipart(token, 2 * limit))
    answer = requests.post(f"{server.url}/post_product_to_gallery", data=body, headers=headers, timeout=60)
    assert "Content-Length" in answer.request.headers and answer.status_code == 413

    # chunked, under the limit: stored
    answer = requests.post(
        f"{server.url}/post_product_to_gallery", data=_multipart(token, limit // 2), headers=headers, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert _node(server, "big-one") is not None


def test_the_default_upload_limit_is_512_mib():
    from mmoda_local.cli import build_parser
    from mmoda_local.config import ServerConfig

    assert ServerConfig(data_dir="/nonexistent").gallery_max_upload_bytes == 512 * 2**20
    args = build_parser().parse_args(["serve", "--gallery-max-upload-mib", "2"])
    assert args.gallery_max_upload_mib == 2.0
