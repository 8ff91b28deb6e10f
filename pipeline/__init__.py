"""Pipeline: detector + embedder + nearest-neighbour search -> submission.csv; evaluation; the demo."""
