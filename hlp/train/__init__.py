"""`hlp train`: the one explicit training loop (`loop`), what a run is made of (its replicas,
splits and epoch metrics: `runs`), the Ray Train per-worker function and its `TorchTrainer`
driver (`ray_train`), the command itself with its output files (`run`), and
the model file that `hlp predict` reads (`model_file`).

May import: `hlp.config`, `hlp.storage`, `hlp.tracking`, `hlp.plots`, `hlp.cluster`, `hlp.data`,
`hlp.evaluate`, `hlp.models`.
"""
