"""`hlp predict`: score a new video with a model file and merge its best clips into segments
(`predict`), and cut those segments into one mp4 (`reel`).

May import: `hlp.extract`, `hlp.train` (the model file), `hlp.evaluate`, `hlp.data`, `hlp.models`.
"""
