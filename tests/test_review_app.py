"""The review app's routes through Flask's test client, and the server killed with SIGKILL."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from test_review_store import KNOWN, MATCHES

from pipeline.review_app import ReviewSetup, create_app
from pipeline.review_store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]):
        Image.fromarray(np.full((60, 80, 3), 40 * i, np.uint8)).save(folder / name)
    (tmp_path / "secret.txt").write_text("not for the browser")
    return folder


def make_client(tmp_path, photos, token=""):
    store = Store(str(tmp_path / "r.sqlite"), known_ids=KNOWN)
    store.load_matches(MATCHES.assign(box="0.1 0.2 0.6 0.7"), 0.6)
    return create_app(ReviewSetup(store=store, images=str(photos), catalog=str(tmp_path / "cat.npz"),
                                  catalog_boxes={"a.jpg": "0.0 0.0 0.5 0.5"}, token=token,
                                  decisions_csv=str(tmp_path / "decisions.csv"))).test_client()


def test_routes_answer_conflict_and_escape_nothing(tmp_path, photos):
    c = make_client(tmp_path, photos)
    page = c.get("/")
    assert page.status_code == 200 and "<script>" not in page.text  # no inline script: CSP forbids it
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self' covers script
    assert c.get("/api/next?reviewer=ana").json["image"] == "d.jpg"
    assert c.post("/api/decide", json={"image": "d.jpg", "reviewer": "ben", "decision": "new"}).status_code == 409
    r = c.post("/api/decide", json={"image": "d.jpg", "reviewer": "ana", "decision": "accept", "rank": 1})
    assert r.status_code == 200 and r.json["individual_id"] == "dol1"
    assert c.post("/api/decide", json={"image": "d.jpg", "reviewer": "<b>x</b>", "decision": "new"}
                  ).status_code == 400
    assert c.post("/api/decide", data="x" * 70_000, content_type="application/json").status_code == 413
    assert c.get("/decisions.csv").text.splitlines() == [
        "image,decision,individual_id,species,reviewer,time",
        c.get("/decisions.csv").text.splitlines()[1]]
    assert c.get("/decisions.csv").text.splitlines()[1].startswith("d.jpg,accept,dol1,bottlenose_dolphin,ana,")


def test_images_are_served_only_from_the_queue_and_catalog(tmp_path, photos):
    c = make_client(tmp_path, photos)
    full = c.get("/img/query/a.jpg")
    assert full.status_code == 200 and Image.open(io.BytesIO(full.data)).size == (80, 60)
    crop = Image.open(io.BytesIO(c.get("/img/query/a.jpg?crop=1").data))
    assert crop.size == (40, 30)  # the box 0.1 0.2 0.6 0.7 of 80x60
    assert Image.open(io.BytesIO(c.get("/img/catalog/a.jpg").data)).size == (80, 60)
    assert Image.open(io.BytesIO(c.get("/img/catalog/a.jpg?crop=1").data)).size == (40, 30)  # its catalog box
    assert Image.open(io.BytesIO(c.get("/img/catalog/b.jpg?crop=1").data)).size == (40, 30)  # a queued photo's
    for bad in ("/img/query/..%2Fsecret.txt", "/img/query/../secret.txt", "/img/catalog/secret.txt",
                "/img/query/e.jpg", "/img/catalog/%2Fetc%2Fpasswd"):
        assert c.get(bad, follow_redirects=True).status_code == 404, bad


def test_a_token_guards_every_route(tmp_path, photos):
    c = make_client(tmp_path, photos, token="s3cret")
    assert c.get("/").status_code == 403 and c.get("/api/stats").status_code == 403
    assert c.get("/api/stats", headers={"X-Review-Token": "s3cret"}).status_code == 200
    assert c.get("/?token=s3cret").status_code == 200
    assert c.get("/api/stats").status_code == 200  # the cookie set by the first visit


def test_a_non_local_bind_without_a_token_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "pipeline/review.py", "--matches", str(tmp_path / "m.csv"), "--catalog",
                        str(tmp_path / "c.npz"), "--images", str(tmp_path), "--db", str(tmp_path / "r.sqlite"),
                        "--host", "0.0.0.0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr
    (tmp_path / "m.csv").write_text("image,rank,individual_id,species,score\n")
    r = subprocess.run([sys.executable, "pipeline/review.py", "--matches", str(tmp_path / "m.csv"), "--catalog",
                        str(tmp_path / "c.npz"), "--images", str(tmp_path), "--db", str(tmp_path / "r.sqlite"),
                        "--host", "0.0.0.0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "give --token" in r.stderr and r.stderr.count("\n") == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp_path, photos, port):
    MATCHES.to_csv(tmp_path / "matches.csv", index=False)
    return serve(["--matches", str(tmp_path / "matches.csv"), "--catalog", str(tmp_path / "cat.npz"), "--images",
                  str(photos), "--db", str(tmp_path / "r.sqlite")], port)


def serve(args: list[str], port: int) -> subprocess.Popen:
    """``pipeline/review.py ARGS --port PORT`` started and answering."""
    log = open(os.path.join(os.path.dirname(args[args.index("--db") + 1]), f"server-{port}.log"), "a")
    proc = subprocess.Popen([sys.executable, "pipeline/review.py", *args, "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)  # a file: an unread pipe would fill and block
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(open(log.name).read()[-2000:])


def post(port, route, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{route}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def test_kill_9_loses_no_answered_decision(tmp_path, photos):
    port = free_port()
    proc = start_server(tmp_path, photos, port)
    answered = []
    for reviewer, decision in [("ana", "new"), ("ben", "unidentifiable"), ("ana", "accept")]:
        q = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/next?reviewer={reviewer}").read())
        answered.append(post(port, "/api/decide", {"image": q["image"], "reviewer": reviewer, "decision": decision,
                                                   "rank": 1})["image"])
    os.kill(proc.pid, signal.SIGKILL)  # right after the last answer: no clean shutdown, no flush
    proc.wait()
    proc = start_server(tmp_path, photos, port)
    try:
        csv = urllib.request.urlopen(f"http://127.0.0.1:{port}/decisions.csv").read().decode().splitlines()
        assert [line.split(",")[0] for line in csv[1:]] == answered
        assert [line.split(",")[1] for line in csv[1:]] == ["new", "unidentifiable", "accept"]
        nxt = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/next?reviewer=cy").read())
        assert nxt["image"] not in answered  # the queue resumes where it was
    finally:
        proc.kill()
        proc.wait()


def test_merge_then_apply_relabels_the_catalog(tmp_path, photos):
    from pipeline.catalog import Catalog, load_npz, save_npz

    cat = str(tmp_path / "cat.npz")
    save_npz(Catalog(np.eye(3, 4, dtype=np.float32), np.array(["a.jpg", "b.jpg", "c.jpg"]),
                     np.array(["dol1", "dol2", "whale1"]),
                     np.array(["bottlenose_dolphin", "bottlenose_dolphin", "humpback_whale"])), cat)
    c = make_client(tmp_path, photos)
    refused = c.post("/api/merge", json={"source": "whale1", "target": "dol1", "reviewer": "ana"})
    assert refused.status_code == 409 and "two species" in refused.json["error"]
    assert c.post("/api/merge", json={"source": "dol2", "target": "dol1", "reviewer": "ana"}).status_code == 200
    r = c.post("/api/apply", json={})
    assert r.status_code == 200 and r.json["relabelled"] == 1 and r.json["enrolled"] == 0
    assert load_npz(cat).individual_ids.tolist() == ["dol1", "dol1", "whale1"]
    assert c.post("/api/apply", json={}).json["relabelled"] == 0  # applied once only
    assert (tmp_path / "decisions.csv").exists()
