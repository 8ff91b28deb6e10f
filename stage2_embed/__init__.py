"""Stage 2: EfficientNet backbone with a (sub-center) ArcFace embedding head, trained on crops."""
