"""Data stage of Happywhale-ID: Kaggle layout in, validated sharded TFRecords out.

Modules: ``layout`` (paths and the Kaggle file layout), ``cleaning`` (species names, row checks),
``images`` (image validation and re-encoding), ``boxes`` (CSV / COCO boxes), ``folds``,
``schema`` (the record format), ``build`` (the builder script), ``reader`` (tf.data pipelines),
``synthesize`` and ``render`` (the synthetic Happywhale-like dataset), ``eda`` (plots and a report),
plus the cross-cutting ``atomic`` (temp-then-rename writes, folder locks), ``cli`` (one-line
errors) and ``tracking`` (MLflow set-up) that the stages above import.

Importing this package imports nothing heavy: TensorFlow is only loaded by the modules that need it.
"""

import os

SCHEMA_VERSION = 1

# TensorFlow's C++ INFO lines drown our one-line errors and progress bars; a user's setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
