"""The data a model trains on: the UMT release layout of TVSum and YouTube Highlights, the
original TVSum `.mat`, the Parquet feature store, the published splits with the validation
carved from training videos, and the training windows of section 4.2.

May import: `hlp.config`, `hlp.storage`. No torch beyond tensors in `batching`, no Ray, no MLflow.
"""
