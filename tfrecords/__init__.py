"""Data stage of Happywhale-ID: Kaggle layout in, validated sharded TFRecords out.

Modules: ``layout`` (the Kaggle file layout and its CSV reader), ``cleaning`` (species names, row
checks), ``images`` (image validation and re-encoding), ``boxes`` (CSV / COCO boxes), ``folds``,
``plan`` (what a build will write), ``schema`` (the record format), ``builder`` (the build; its
command is ``build.py``), ``reader`` (tf.data pipelines, the one decode-resize and crop cut),
``eda_report`` (plots and a report; ``eda.py``) and ``synthetic/`` (the generated Happywhale-like
world; ``synthesize.py``). Runtime helpers (atomic files, paths, CLI errors, MLflow) live in
``runtime``.

Importing this package has no side effects and imports nothing heavy.
"""

SCHEMA_VERSION = 1
