"""The match-review web app (Flask): JSON routes over ``review_store.Store``, the page and its
script from ``pipeline/static/``, and photos served only from the configured folders.

Flask because the work is synchronous (SQLite writes, Pillow crops, one TensorFlow enroll at
Apply) and already in the environment through MLflow; ``waitress`` serves it with a thread pool
(``pipeline/review.py``). Safety: every id and file name is user data, so the page builds its DOM
with ``textContent`` only and a Content-Security-Policy forbids inline script; image names are
looked up in the queue or the catalog before a file is opened, inside the given folders only;
request bodies are capped; a non-local bind needs a token (``X-Review-Token`` header, or
``?token=`` once, which sets a cookie).
"""

from __future__ import annotations

import hmac
import io
import os
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request, send_from_directory
from werkzeug.security import safe_join

from pipeline.review_store import Conflict, Store

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
REVIEWER = re.compile(r"^[\w .@-]{1,64}$")
MAX_BODY = 64 * 1024  # decisions are a few hundred bytes; anything larger is refused (413)


@dataclass(frozen=True)
class ReviewSetup:
    """What the app serves from: the store, the photo folders and what ``Apply`` needs."""
    store: Store
    images: str  # the query photos (and, once enrolled, catalog photos)
    catalog: str  # catalog .npz that Apply grows
    catalog_images: tuple[str, ...] = ()  # folders holding the catalog's photos or crops
    catalog_boxes: dict[str, str] = field(default_factory=dict)  # catalog file -> its crop box ("" unknown)
    embedder: str = ""
    detector: str = "none"
    decisions_csv: str = "decisions.csv"
    token: str = ""
    apply_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)


bp = Blueprint("review", __name__)


def create_app(setup: ReviewSetup) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["review"] = setup
    app.register_blueprint(bp)
    app.before_request(_guard)
    app.after_request(_headers)
    app.register_error_handler(Conflict, lambda e: (jsonify(error=str(e)), 409))
    app.register_error_handler(ValueError, lambda e: (jsonify(error=str(e)), 400))
    app.register_error_handler(KeyError, lambda e: (jsonify(error=f"unknown image {e.args[0]!r}"), 404))
    return app


def _setup() -> ReviewSetup:
    return current_app.extensions["review"]


def _guard():
    token = _setup().token
    if not token:
        return None
    given = request.headers.get("X-Review-Token") or request.args.get("token") or request.cookies.get("token")
    if not given or not hmac.compare_digest(given, token):
        abort(403, "a token is required: open the address printed by review.py")
    return None


def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self'; object-src 'none'"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if _setup().token and request.args.get("token"):
        resp.set_cookie("token", _setup().token, httponly=True, samesite="Strict")
    return resp


@bp.get("/")
def page():
    return send_from_directory(STATIC, "review.html")


@bp.get("/static/<name>")
def static_file(name: str):
    return send_from_directory(STATIC, name)


@bp.get("/api/next")
def next_query():
    q = _setup().store.next_query(_reviewer(request.args), request.args.get("species", ""))
    return jsonify(q or {"done": True})


@bp.get("/api/query")
def one_query():
    q = _setup().store.get(request.args.get("image", ""))
    return jsonify(q) if q else (jsonify(error="unknown image"), 404)


@bp.post("/api/decide")
def decide():
    b = _body()
    rank = b.get("rank")
    return jsonify(_setup().store.decide(str(b.get("image", "")), _reviewer(b), str(b.get("decision", "")),
                                         int(rank) if rank is not None else None, str(b.get("species", ""))))


@bp.post("/api/skip")
def skip():
    b = _body()
    _setup().store.skip(str(b.get("image", "")), _reviewer(b))
    return jsonify(ok=True)


@bp.post("/api/undo")
def undo():
    return jsonify(image=_setup().store.undo(_reviewer(_body())))


@bp.post("/api/merge")
def merge():
    b = _body()
    return jsonify(_setup().store.merge(str(b.get("source", "")), str(b.get("target", "")), _reviewer(b)))


@bp.post("/api/apply")
def apply():
    from pipeline.review_apply import apply_decisions

    setup = _setup()
    if not setup.apply_lock.acquire(blocking=False):
        raise Conflict("Apply is already running")
    try:
        return jsonify(apply_decisions(setup))
    finally:
        setup.apply_lock.release()


@bp.get("/api/queue")
def queue():
    status = request.args.get("status", "all")
    if status not in ("all", "pending", "decided"):
        raise ValueError("status must be all, pending or decided")
    return jsonify(_setup().store.queue(request.args.get("species", ""), status))


@bp.get("/api/stats")
def stats():
    return jsonify(_setup().store.stats())


@bp.get("/decisions.csv")
def decisions():
    return Response(_setup().store.decisions().to_csv(index=False), mimetype="text/csv")


@bp.get("/img/query/<path:name>")
def query_image(name: str):
    setup = _setup()
    q = setup.store.get(name)
    if q is None:
        abort(404)
    box = q["box"] if request.args.get("crop") == "1" else ""
    return _jpeg(_find(name, (setup.images,)), box, _size(request.args))


@bp.get("/img/catalog/<path:name>")
def catalog_image(name: str):
    setup = _setup()
    q = setup.store.get(name)  # a reviewed photo, enrolled at Apply
    if name not in setup.catalog_boxes and q is None:
        abort(404)
    box = setup.catalog_boxes.get(name) or (q["box"] if q else "")
    return _jpeg(_find(name, (*setup.catalog_images, setup.images)), box if request.args.get("crop") == "1"
                 else "", _size(request.args))


def _body() -> dict:
    b = request.get_json(silent=True)
    if not isinstance(b, dict):
        raise ValueError("a JSON object is expected")
    return b


def _reviewer(src) -> str:
    name = str(src.get("reviewer", "")).strip()
    if not REVIEWER.match(name):
        raise ValueError("reviewer: 1-64 letters, digits, spaces or . @ _ -")
    return name


def _size(args) -> int:
    return 2048 if args.get("zoom") == "1" else 640


def _find(name: str, folders: tuple[str, ...]) -> str:
    """The file ``name`` in the first folder that has it; never a path outside those folders."""
    for folder in folders:
        path = safe_join(folder, name) if folder else None
        if path and os.path.isfile(path):
            return path
    abort(404)


def _jpeg(path: str, box: str, size: int) -> Response:
    data = _encode(path, os.path.getmtime(path), box, size)
    resp = Response(data, mimetype="image/jpeg")
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


@lru_cache(maxsize=512)
def _encode(path: str, mtime: float, box: str, size: int) -> bytes:
    """A JPEG of the photo (or of its rel-yxyx ``box``), no side over ``size``."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        if box:
            y0, x0, y1, x1 = (float(v) for v in box.split())
            w, h = im.size
            im = im.crop((int(x0 * w), int(y0 * h), max(int(x1 * w), int(x0 * w) + 1),
                          max(int(y1 * h), int(y0 * h) + 1)))
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=88)
    return buf.getvalue()
