"""Speech emotion recognition: `pipeline.data` -> `pipeline.training` -> `pipeline.inference`, with
the configuration, model, errors, metrics, plots and file writes they share; `ser` is `pipeline.cli`."""
