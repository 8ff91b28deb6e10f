"""The synthetic Happywhale-like world: individuals with identity marks (``render``) drawn into
Kaggle-layout photos with boxes (``world``); ``tfrecords/synthesize.py`` is its command."""
