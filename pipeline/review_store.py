"""The match review's state in SQLite: the queue of query photos, reviewers' claims, decisions and
merges. Every answer is committed when it is given (WAL mode, synchronous=FULL), so killing the
server loses nothing that was answered; each state change runs in one ``BEGIN IMMEDIATE``
transaction, so two reviewers never hold the same photo and a second, conflicting decision is
refused (``Conflict``), never written over the first.

    store = Store("review.sqlite")
    store.load_matches(pd.read_csv("matches.csv"), threshold=0.6)
    q = store.next_query("ana")            # the most uncertain photo nobody else holds
    store.decide(q["image"], "ana", "accept", rank=1)
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd

CLAIM_SECONDS = 300.0  # a claim not answered within this is free again (a reviewer left)
DECISIONS = ("accept", "new", "unidentifiable")
SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (image TEXT PRIMARY KEY, best_score REAL, uncertainty REAL,
    predicted_species TEXT, box TEXT, detection_score REAL);
CREATE TABLE IF NOT EXISTS candidates (image TEXT, rank INTEGER, individual_id TEXT, species TEXT,
    score REAL, catalog_image TEXT, PRIMARY KEY (image, rank));
CREATE TABLE IF NOT EXISTS claims (image TEXT PRIMARY KEY, reviewer TEXT, expires REAL);
CREATE TABLE IF NOT EXISTS skips (reviewer TEXT, image TEXT, PRIMARY KEY (reviewer, image));
CREATE TABLE IF NOT EXISTS decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, image TEXT UNIQUE,
    decision TEXT, individual_id TEXT, species TEXT, reviewer TEXT, time TEXT, applied INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS merges (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT UNIQUE, target TEXT,
    species TEXT, reviewer TEXT, time TEXT, applied INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS queue_order ON queries (uncertainty, image);
"""
# The queue walks ``queue_order`` and stops at the first free photo: O(answered), not a sort of all.
NEXT = """SELECT q.image FROM queries q INDEXED BY queue_order
WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.image = q.image)
  AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image = q.image AND c.reviewer != :reviewer)
  AND (:species = '' OR q.predicted_species = :species)
  AND {skipped} EXISTS (SELECT 1 FROM skips s WHERE s.reviewer = :reviewer AND s.image = q.image)
ORDER BY q.uncertainty, q.image LIMIT 1"""


class Conflict(ValueError):
    """A decision or merge that would contradict one already stored (HTTP 409)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """One SQLite file; a fresh connection per call, so any thread of the server may use it."""

    def __init__(self, path: str, id_pattern: str = "new_{date}_{n:03d}", known_ids: dict[str, str] | None = None):
        try:
            id_pattern.format(n=1, species="beluga", date="20260101")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"--id-pattern {id_pattern!r}: its fields are {{n}}, {{species}} and {{date}} "
                             f"({e!r})") from None
        self.path, self.id_pattern = path, id_pattern
        self.known = dict(known_ids or {})  # catalog individual -> species: for merges and new ids
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the one writer
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            db.execute("BEGIN IMMEDIATE")  # one writer at a time: claims and decisions cannot race
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def load_matches(self, matches: pd.DataFrame, threshold: float) -> int:
        """Queue every image of ``matches.csv`` (kept across restarts; re-loading adds new images only).
        Uncertainty is the distance of the best score to the threshold: smallest first."""
        need = {"image", "rank", "individual_id", "species", "score"}
        if missing := need - set(matches.columns):
            raise ValueError(f"matches CSV lacks column(s) {', '.join(sorted(missing))}")
        m = matches.sort_values(["image", "rank"]).reset_index(drop=True)
        col = lambda c, default: m[c] if c in m else pd.Series(default, index=m.index)  # noqa: E731
        m = m.assign(predicted_species=col("predicted_species", ""), box=col("box", ""),
                     detection_score=col("detection_score", -1.0), catalog_image=col("catalog_image", ""))
        top = m.drop_duplicates("image")
        with self._tx() as db:
            before = db.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
            db.executemany("INSERT OR IGNORE INTO queries VALUES (?,?,?,?,?,?)", zip(
                top["image"].astype(str), top["score"].astype(float), (top["score"].astype(float) - threshold).abs(),
                top["predicted_species"].astype(str), top["box"].astype(str), top["detection_score"].astype(float),
                strict=True))
            db.executemany("INSERT OR IGNORE INTO candidates VALUES (?,?,?,?,?,?)", zip(
                m["image"].astype(str), m["rank"].astype(int), m["individual_id"].astype(str),
                m["species"].astype(str), m["score"].astype(float), m["catalog_image"].astype(str), strict=True))
            return db.execute("SELECT COUNT(*) FROM queries").fetchone()[0] - before

    def next_query(self, reviewer: str, species: str = "") -> dict | None:
        """Claim the most uncertain undecided photo that no other reviewer holds (this reviewer's
        skipped ones last); the reviewer's other claims are released."""
        now = time.time()
        with self._tx() as db:
            db.execute("DELETE FROM claims WHERE expires < ?", (now,))
            args = {"reviewer": reviewer, "species": species}
            row = (db.execute(NEXT.format(skipped="NOT"), args).fetchone()
                   or db.execute(NEXT.format(skipped=""), args).fetchone())
            db.execute("DELETE FROM claims WHERE reviewer = ?", (reviewer,))
            if row is None:
                return None
            db.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?)", (row["image"], reviewer, now + CLAIM_SECONDS))
            return self._query(db, row["image"])

    def get(self, image: str) -> dict | None:
        with self._tx() as db:
            return self._query(db, image)

    def _query(self, db: sqlite3.Connection, image: str) -> dict | None:
        q = db.execute("SELECT * FROM queries WHERE image = ?", (image,)).fetchone()
        if q is None:
            return None
        cands = db.execute("SELECT rank, individual_id, species, score, catalog_image FROM candidates "
                           "WHERE image = ? ORDER BY rank", (image,)).fetchall()
        dec = db.execute("SELECT decision, individual_id, species, reviewer, time FROM decisions WHERE image = ?",
                         (image,)).fetchone()
        return {**dict(q), "candidates": [dict(c) for c in cands], "decision": dict(dec) if dec else None}

    def decide(self, image: str, reviewer: str, decision: str, rank: int | None = None,
               species: str = "") -> dict:
        """Store one answer: ``accept`` candidate ``rank``, ``new`` individual (an id from the
        pattern; ``species`` or the predicted one) or ``unidentifiable``."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        with self._tx() as db:
            q = db.execute("SELECT predicted_species FROM queries WHERE image = ?", (image,)).fetchone()
            if q is None:
                raise KeyError(image)
            done = db.execute("SELECT reviewer, decision FROM decisions WHERE image = ?", (image,)).fetchone()
            if done:
                raise Conflict(f"{image} was already answered ({done['decision']}) by {done['reviewer']}")
            held = db.execute("SELECT reviewer FROM claims WHERE image = ? AND expires >= ?",
                              (image, time.time())).fetchone()
            if held and held["reviewer"] != reviewer:
                raise Conflict(f"{image} is being reviewed by {held['reviewer']}")
            ind, sp = "", species or q["predicted_species"]
            if decision == "accept":
                c = db.execute("SELECT individual_id, species FROM candidates WHERE image = ? AND rank = ?",
                               (image, rank)).fetchone()
                if c is None:
                    raise ValueError(f"{image} has no candidate {rank}")
                ind, sp = c["individual_id"], c["species"]
            elif decision == "new":
                ind = self._new_id(db, sp)
            row = (image, decision, ind, sp if decision != "unidentifiable" else "", reviewer, _now())
            db.execute("INSERT INTO decisions (image, decision, individual_id, species, reviewer, time) "
                       "VALUES (?,?,?,?,?,?)", row)
            db.execute("DELETE FROM claims WHERE image = ?", (image,))
            return dict(zip(("image", "decision", "individual_id", "species", "reviewer", "time"), row, strict=True))

    def _new_id(self, db: sqlite3.Connection, species: str) -> str:
        """The next id from the pattern that neither the catalog nor an earlier decision uses."""
        n = int((db.execute("SELECT value FROM meta WHERE key = 'next_n'").fetchone() or {"value": 1})["value"])
        taken = {r[0] for r in db.execute("SELECT individual_id FROM decisions")} | set(self.known)
        while (new := self.id_pattern.format(n=n, species=species, date=datetime.now(UTC).strftime("%Y%m%d"))
               ) in taken:
            n += 1
        db.execute("INSERT OR REPLACE INTO meta VALUES ('next_n', ?)", (str(n + 1),))
        return new

    def undo(self, reviewer: str) -> str | None:
        """Take back this reviewer's latest answer not yet applied; the photo is theirs again."""
        with self._tx() as db:
            row = db.execute("SELECT id, image FROM decisions WHERE reviewer = ? AND applied = 0 "
                             "ORDER BY id DESC LIMIT 1", (reviewer,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM decisions WHERE id = ?", (row["id"],))
            db.execute("DELETE FROM claims WHERE reviewer = ?", (reviewer,))
            db.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?)", (row["image"], reviewer,
                                                                         time.time() + CLAIM_SECONDS))
            return row["image"]

    def skip(self, image: str, reviewer: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO skips VALUES (?,?)", (reviewer, image))
            db.execute("DELETE FROM claims WHERE image = ? AND reviewer = ?", (image, reviewer))

    def merge(self, source: str, target: str, reviewer: str) -> dict:
        """File catalog individual ``source`` under ``target`` (the same animal twice); refused
        across species, for unknown ids and for chains (a source merged twice)."""
        species = self._species_of(source), self._species_of(target)
        if source == target:
            raise ValueError("an individual cannot be merged into itself")
        if species[0] != species[1]:
            raise Conflict(f"{source} is {species[0]} and {target} is {species[1]}: two species are never one "
                           "individual")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM merges WHERE source = ?", (source,)).fetchone():
                raise Conflict(f"{source} is already merged")
            if db.execute("SELECT 1 FROM merges WHERE source = ?", (target,)).fetchone():
                raise Conflict(f"{target} is itself merged into another individual")
            db.execute("INSERT INTO merges (source, target, species, reviewer, time) VALUES (?,?,?,?,?)",
                       (source, target, species[0], reviewer, _now()))
        return {"source": source, "target": target, "species": species[0]}

    def _species_of(self, individual: str) -> str:
        if individual in self.known:
            return self.known[individual]
        with self._tx() as db:
            row = db.execute("SELECT species FROM decisions WHERE individual_id = ? AND species != ''",
                             (individual,)).fetchone()
        if row is None:
            raise ValueError(f"{individual!r} is not a catalog individual")
        return row["species"]

    def pending(self) -> tuple[pd.DataFrame, dict[str, str]]:
        """Answers and merges not applied yet: (decisions to enroll, merge map source -> target)."""
        with self._tx() as db:
            dec = pd.read_sql_query("SELECT * FROM decisions WHERE applied = 0 AND decision != 'unidentifiable'",
                                    db)
            merges = dict(db.execute("SELECT source, target FROM merges WHERE applied = 0").fetchall())
        return dec, merges

    def mark_applied(self, decision_ids: list[int], merge_sources: list[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE decisions SET applied = 1 WHERE id = ?", [(int(i),) for i in decision_ids])
            db.executemany("UPDATE merges SET applied = 1 WHERE source = ?", [(s,) for s in merge_sources])

    def decisions(self) -> pd.DataFrame:
        """Every answer, in the order given: image,decision,individual_id,species,reviewer,time."""
        with self._tx() as db:
            return pd.read_sql_query("SELECT image, decision, individual_id, species, reviewer, time FROM decisions "
                                     "ORDER BY id", db)

    def queue(self, species: str = "", status: str = "all", limit: int = 500) -> list[dict]:
        """The queue as rows (image, best score, species, status) for the side list."""
        where = {"all": "1", "pending": "d.image IS NULL", "decided": "d.image IS NOT NULL"}[status]
        with self._tx() as db:
            rows = db.execute(
                "SELECT q.image, q.best_score, q.predicted_species, d.decision, d.individual_id FROM queries q "
                f"LEFT JOIN decisions d ON d.image = q.image WHERE {where} AND (? = '' OR q.predicted_species = ?) "
                "ORDER BY q.uncertainty, q.image LIMIT ?", (species, species, limit)).fetchall()
            return [dict(r) for r in rows]

    def stats(self) -> dict:
        with self._tx() as db:
            one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
            return {"queries": one("SELECT COUNT(*) FROM queries"), "decided": one("SELECT COUNT(*) FROM decisions"),
                    "unapplied": one("SELECT COUNT(*) FROM decisions WHERE applied = 0"),
                    "merges": one("SELECT COUNT(*) FROM merges"),
                    "species": [r[0] for r in db.execute("SELECT DISTINCT predicted_species FROM queries "
                                                         "ORDER BY 1")],
                    "all_species": sorted({*self.known.values(), *(r[0] for r in db.execute(
                        "SELECT DISTINCT species FROM candidates"))} - {""})}
