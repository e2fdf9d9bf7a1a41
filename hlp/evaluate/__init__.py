"""Scoring: the published metrics (YouTube mAP, TVSum top-5 mAP), whole-video scoring with full
attention or sliding windows, and the checks of a scores file (`hlp evaluate`).

May import: `hlp.data`, `hlp.models`.
"""
