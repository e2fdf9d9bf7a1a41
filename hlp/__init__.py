"""hlp: audio-visual video highlight detection with HPCL.

The sub-packages, in the order they may import each other (each imports only those above it):

- `models`: pure PyTorch (the co-occurrence model, its variants, the losses, the extractor nets).
- `config`, `storage`, `tracking`, `plots`, `cluster`: the typed YAML, local and `s3://` paths,
  MLflow, PNG figures, and joining or starting Ray. `config` may import `models` (the settings
  the model and loss declare), `storage` and `tracking`; the others import no hlp module.
- `data`: the benchmark releases, splits, the Parquet feature store, training windows.
- `evaluate`: the published metrics and whole-video scoring.
- `extract`: `hlp extract`, decoding videos and running the extractors on Ray Data.
- `train`: `hlp train`, the training loop, its Ray Train driver, the model file.
- `sweep`: `hlp sweep`, Ray Tune + Optuna over the training of `train`.
- `predict`: `hlp predict`, scoring a new video and cutting its reel.
- `reproduce`: `hlp reproduce`, the paper's section 4 as (config, seed) runs and a report.
- `cli`: the `hlp` command; it may import everything, lazily, so a config error prints before
  torch, Ray and MLflow load.

`tests/test_layout.py` checks this order and that the import graph has no cycle.
"""
