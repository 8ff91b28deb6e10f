"""The review's SQLite store and Apply's merge chains, on hand-made matches with known answers."""

import pandas as pd
import pytest

from pipeline.review_apply import final_id
from pipeline.review_store import Conflict, Store

# best scores 0.9, 0.55, 0.2, 0.62 against threshold 0.6: uncertainty 0.3, 0.05, 0.4, 0.02
MATCHES = pd.DataFrame([
    ("a.jpg", 1, "whale1", "humpback_whale", 0.90), ("a.jpg", 2, "whale2", "humpback_whale", 0.40),
    ("b.jpg", 1, "whale2", "humpback_whale", 0.55), ("b.jpg", 2, "dol1", "bottlenose_dolphin", 0.50),
    ("c.jpg", 1, "dol1", "bottlenose_dolphin", 0.20),
    ("d.jpg", 1, "dol1", "bottlenose_dolphin", 0.62), ("d.jpg", 2, "dol2", "bottlenose_dolphin", 0.61),
], columns=["image", "rank", "individual_id", "species", "score"]).assign(
    predicted_species=lambda d: d["image"].map({"a.jpg": "humpback_whale", "b.jpg": "humpback_whale",
                                                "c.jpg": "bottlenose_dolphin", "d.jpg": "bottlenose_dolphin"}))
KNOWN = {"whale1": "humpback_whale", "whale2": "humpback_whale", "dol1": "bottlenose_dolphin",
         "dol2": "bottlenose_dolphin", "new_001": "beluga"}


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "r.sqlite"), id_pattern="new_{n:03d}", known_ids=KNOWN)
    assert s.load_matches(MATCHES, threshold=0.6) == 4
    return s


def test_queue_is_most_uncertain_first_and_claims_are_exclusive(store):
    assert store.next_query("ana")["image"] == "d.jpg"  # |0.62 - 0.6| is the smallest
    assert store.next_query("ben")["image"] == "b.jpg"  # d.jpg is ana's
    assert store.next_query("ana")["image"] == "d.jpg"  # asking again keeps one's own claim
    assert [q["image"] for q in store.queue()] == ["d.jpg", "b.jpg", "a.jpg", "c.jpg"]
    assert store.next_query("cy", species="bottlenose_dolphin")["image"] == "c.jpg"


def test_decisions_refuse_conflicts_and_undo_gives_the_photo_back(store):
    store.next_query("ana")
    with pytest.raises(Conflict, match="being reviewed by ana"):
        store.decide("d.jpg", "ben", "accept", rank=1)
    d = store.decide("d.jpg", "ana", "accept", rank=2)
    assert (d["individual_id"], d["species"]) == ("dol2", "bottlenose_dolphin")
    with pytest.raises(Conflict, match="already answered"):
        store.decide("d.jpg", "ana", "new")
    assert store.next_query("ana")["image"] == "b.jpg"
    assert store.undo("ana") == "d.jpg" and store.undo("ana") is None
    assert store.next_query("ben")["image"] == "b.jpg"  # d.jpg went back to ana, not to ben
    assert store.decide("d.jpg", "ana", "unidentifiable")["individual_id"] == ""


def test_new_ids_follow_the_pattern_and_skip_taken_ones(store):
    # new_001 is a catalog id already: the first new individual is new_002, then new_003
    assert store.decide("c.jpg", "ana", "new")["individual_id"] == "new_002"
    assert store.decide("a.jpg", "ana", "new", species="beluga") == {**store.decisions().iloc[1].to_dict()}
    assert store.decisions()["individual_id"].tolist() == ["new_002", "new_003"]
    assert store.decisions()["species"].tolist() == ["bottlenose_dolphin", "beluga"]


def test_skipped_photos_come_last_for_that_reviewer_only(store):
    store.next_query("ana")
    store.skip("d.jpg", "ana")
    assert store.next_query("ana")["image"] == "b.jpg"
    assert store.next_query("ben")["image"] == "d.jpg"


def test_merges_are_refused_across_species_and_chains_resolve(store):
    with pytest.raises(Conflict, match="two species"):
        store.merge("whale1", "dol1", "ana")
    with pytest.raises(ValueError, match="not a catalog individual"):
        store.merge("nobody", "dol1", "ana")
    assert store.merge("dol2", "dol1", "ana")["species"] == "bottlenose_dolphin"
    with pytest.raises(Conflict, match="already merged"):
        store.merge("dol2", "dol1", "ben")
    assert store.pending()[1] == {"dol2": "dol1"}
    assert final_id("a", {"a": "b", "b": "c"}) == "c" and final_id("x", {"a": "b"}) == "x"


def test_answers_survive_a_new_store_on_the_same_file(store, tmp_path):
    store.decide("a.jpg", "ana", "accept", rank=1)
    again = Store(str(tmp_path / "r.sqlite"), known_ids=KNOWN)
    assert again.load_matches(MATCHES, threshold=0.6) == 0  # nothing queued twice
    assert again.decisions()[["image", "individual_id"]].values.tolist() == [["a.jpg", "whale1"]]
    assert again.stats()["decided"] == 1


def test_catalog_boxes_survive_add_save_and_a_merge_relabel(tmp_path):
    import numpy as np

    from pipeline.catalog import Catalog, load_npz, relabel, save_npz

    def cat(names, ids, boxes=None):
        n = len(names)
        return Catalog(np.eye(n, 3, dtype=np.float32), np.array(names), np.array(ids), np.array(["sp"] * n), "",
                       None if boxes is None else np.array(boxes, np.float32))

    old = cat(["a", "b"], ["x", "y"])  # no boxes known: whole photos
    grown = old.add(cat(["b", "c"], ["y", "z"], [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 1.0, 1.0]]))
    assert grown.filenames.tolist() == ["a", "b", "c"]
    assert np.allclose(grown.boxes, [[0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 1, 1]])
    save_npz(grown, str(tmp_path / "c.npz"))
    assert relabel(str(tmp_path / "c.npz"), {"y": "x"}) == 1
    back = load_npz(str(tmp_path / "c.npz"))
    assert back.individual_ids.tolist() == ["x", "x", "z"] and np.allclose(back.boxes, grown.boxes)
    assert not (tmp_path / ".lock").exists()


def test_a_bad_id_pattern_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="fields are"):
        Store(str(tmp_path / "r.sqlite"), id_pattern="{individual}_{n}")


def test_each_candidate_shows_its_catalog_photo_closest_to_the_query():
    import numpy as np

    from pipeline.catalog import Catalog
    from pipeline.search import best_catalog_images

    emb = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    cat = Catalog(emb, np.array(["a1", "a2", "b1", "c1"]), np.array(["A", "A", "B", "C"]), np.array(["s"] * 4))
    queries = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    ids = np.array([["B", "A", ""], ["A", "C", "B"]], dtype=object)
    assert best_catalog_images(queries, cat, ids).tolist() == [["b1", "a2", ""], ["a1", "c1", "b1"]]
