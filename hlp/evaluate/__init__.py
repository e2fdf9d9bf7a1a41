"""Scoring: the published metrics (YouTube mAP, TVSum top-5 mAP), whole-video scoring with full
attention or sliding windows, the checks of a scores file (`hlp evaluate`), and paired
comparisons of two configs on the same seeds and test videos (`paired`).

May import: `hlp.data`, `hlp.models`.
"""
