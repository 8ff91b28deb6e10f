"""Stage 1: a KerasCV detector that finds the fin, fluke or body, and crop records for stage 2."""
