"""Inference: the predictor (the one prediction path), the answers it gives, evaluation of a
checkpoint, and export/serving through BentoML. Serving and the demo import only this and shared
modules."""
