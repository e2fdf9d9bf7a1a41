"""`hlp sweep`: the search space and its checks (`space`), one trial as a Train V2 driver
(`trial`), the Tune + Optuna + ASHA search and its report (`run`), Optuna's figures (`figures`).

May import: `hlp.train` and what it may import.
"""
