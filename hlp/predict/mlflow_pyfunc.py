"""The code of the MLflow Model that `hlp train` logs per domain ("models from code").

MLflow runs this file when it loads the model (`mlflow.pyfunc.load_model`), so the model is
this code plus the hlp model file as an artifact: nothing is unpickled. The weights are read by
hlp's own safe loader (`torch.load(weights_only=True)`), and clips are scored by the same
function as `hlp predict`.

Input: one video's clip features, {"visual": (T, Dv) float32, "audio": (T, Da) float32}, one row
per clip, as `hlp extract` (or the release) made them for the extractors the model file records.
Output: the (T,) float32 score of each clip. The code is hlp's own, so the model loads where hlp
is installed (its requirements pin torch, mlflow and numpy; hlp comes from this repository).
"""

from __future__ import annotations

from collections.abc import Mapping

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from hlp.predict.predict import score_clips
from hlp.train import model_file


class HighlightModel(PythonModel):
    # The signature's tensor specs check the input; MLflow's type-hint check (and its warning on
    # every load) has no hint for a dict of arrays.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        self.loaded = model_file.load(context.artifacts[model_file.MLFLOW_ARTIFACT])

    def predict(self, context, model_input, params=None) -> np.ndarray:
        if not isinstance(model_input, Mapping) or {"visual", "audio"} - set(model_input):
            raise ValueError("the input is one video's clip features: {'visual': (T, Dv), 'audio': (T, Da)}")
        visual, audio = (np.asarray(model_input[k], np.float32) for k in ("visual", "audio"))
        if visual.ndim != 2 or audio.shape != (len(visual), self.loaded.audio_dim) or \
                visual.shape[1] != self.loaded.visual_dim:
            raise ValueError(f"expected (T, {self.loaded.visual_dim}) visual and (T, {self.loaded.audio_dim}) "
                             f"audio features, got {visual.shape} and {audio.shape}")
        return score_clips(self.loaded, visual, audio)


mlflow.models.set_model(HighlightModel())
