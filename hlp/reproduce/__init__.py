"""`hlp reproduce`: the paper's section 4 as data (`tables`, `published`), its YAML (`config`),
every (config, seed) run as a Ray task (`run`, `unit`) stored atomically (`store`), MLflow
runs per table and cell (`runs`), and the report (`report`, `markdown`, `figures`; the paired
statistics are `hlp.evaluate.paired`).

May import: `hlp.train` and what it may import. Not `hlp.sweep`: a sweep's result reaches a
table as a file (`sweeps:` in the YAML).
"""
