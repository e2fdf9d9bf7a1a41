"""`hlp extract`: which videos a job reads, one PyAV decode pass into clips, the extractors'
input contracts and weights, and the resumable Ray Data pipeline that writes the feature store.

May import: `hlp.config`, `hlp.storage`, `hlp.cluster`, `hlp.data` (the feature store), `hlp.models`.
"""
