"""``bench/results.py`` rendering: a kept JSON file replaces its entry's section; an entry without
one keeps the section the existing RESULTS.md has (a fresh checkout has no work folder), and only
an entry never run says so."""

import json

from bench.results import entries, render


def _record(w, name: str, result: dict) -> None:
    rec = {"command": f"python {name}", "date": "2026-12-01 09:00 UTC", "minutes": 1.5, "ok": True,
           "result": result}
    (w / f"{name}.json").write_text(json.dumps(rec))


def test_render_keeps_sections_without_json_and_replaces_those_with(tmp_path):
    w, out = tmp_path / "w", tmp_path / "RESULTS.md"
    w.mkdir()
    _record(w, "demo", {"test_map5": 0.8123})
    _record(w, "search", {"speedup": 3.25})
    render(str(w), str(out))
    (w / "search.json").unlink()  # as in a fresh checkout: the figures are only in RESULTS.md
    _record(w, "demo", {"test_map5": 0.7001})
    render(str(w), str(out))
    text = out.read_text()
    assert "| test_map5 | 0.7001 |" in text and "0.8123" not in text  # rerun: replaced
    assert "## search" in text and "| speedup | 3.25 |" in text  # no file: kept as it was
    assert text.count("## search") == 1
    render(str(w), str(out))
    assert out.read_text() == text  # rendering again changes nothing (no blank lines pile up)
    never = [n for n in entries(str(w)) if n not in ("demo", "search")]
    assert all(f"## {n}" in text for n in never) and text.count(": not run yet.") == len(never)
    order = [text.index(f"## {n}\n") for n in entries(str(w))]
    assert order == sorted(order)  # the entries' order, whatever was kept
