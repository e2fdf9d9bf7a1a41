"""`hlp predict`: score a new video with a model file and merge its best clips into segments
(`predict`), and cut those segments into one mp4 (`reel`); the model of an MLflow URI
(`mlflow_model`), and the code of the MLflow Models `hlp train` logs (`mlflow_pyfunc`).

May import: `hlp.extract`, `hlp.train` (the model file), `hlp.evaluate`, `hlp.data`, `hlp.tracking`,
`hlp.models`.
"""
