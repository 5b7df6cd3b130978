"""Training: the shared set-up, our Accelerate loop, the transformers.Trainer path, checkpoints,
and the tools around them (sanity checks, lr-find, tune, probe, model card)."""
