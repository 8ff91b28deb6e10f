import numpy as np
import pytest

from stage2_embed.retrieval import known_individual_map5, map_at_5, rank_individuals


@pytest.mark.parametrize(
    ("preds", "truths", "expected"),
    [
        ([["a", "b", "c", "d", "e"]], ["a"], 1.0),
        ([["x", "a", "c", "d", "e"]], ["a"], 0.5),
        ([["x", "y", "z", "w", "a"]], ["a"], 0.2),
        ([["x", "y", "z", "w", "v", "a"]], ["a"], 0.0),  # rank 6 does not count
        ([["x", "a", "a", "d", "e"]], ["a"], 0.5),  # a repeat counts once, at its first rank
        ([["a", "b"], ["b", "new_individual"], ["c", "d"]], ["a", "new_individual", "z"], (1 + 0.5 + 0) / 3),
    ],
)
def test_map_at_5_hand_made(preds, truths, expected):
    assert map_at_5(preds, truths) == pytest.approx(expected)


def test_rank_takes_the_best_image_per_individual():
    # gallery: a, a, b, c; query 0 is closest to the second "a" image, then c, then b
    sim = np.array([[0.1, 0.9, 0.3, 0.5], [0.2, 0.2, 0.8, 0.1]])
    ids, scores = rank_individuals(sim, ["a", "a", "b", "c"], k=5)
    assert ids[0].tolist() == ["a", "c", "b", "", ""] and ids[1].tolist() == ["b", "a", "c", "", ""]
    np.testing.assert_allclose(scores[0, :3], [0.9, 0.5, 0.3])
    assert np.isneginf(scores[0, 3])


def test_known_individual_map5_skips_unknown_queries():
    g = np.eye(3)
    q = np.array([[1.0, 0, 0], [0, 0.2, 0.9], [0, 1, 0]])
    # query 1 is "b" but closest to "c" -> rank 2; query 2 is unknown "z" and is skipped
    assert known_individual_map5(q, ["a", "b", "z"], g, ["a", "b", "c"]) == pytest.approx((1 + 0.5) / 2)
