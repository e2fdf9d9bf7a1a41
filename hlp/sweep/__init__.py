"""`hlp sweep`: the search space and its checks (`space`), one trial as Tune's function
trainable (`trial`) whose replicas train as Ray tasks (`replicas`), what the sweep keeps of a
finished trial (`keep`), the concurrency that follows the cluster (`concurrency`), the Tune +
Optuna + ASHA search and its report (`run`), Optuna's figures (`figures`).

May import: `hlp.train` and what it may import.
"""
