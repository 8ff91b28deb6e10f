"""Runtime helpers every package shares and none of them is about: atomic files and folder locks
(``atomic``), local-or-URL paths (``storage``), one-line CLI errors and config flags (``cli``, ``flags``),
the distribution strategy (``strategy``), MLflow (``tracking``), checkpoints (``checkpoint``) and the one
training loop both stages run (``trainer``).

Importing it has no side effects and loads nothing heavy.
"""
