"""The models `hlp train` logs as MLflow Models: each loads with `mlflow.pyfunc.load_model` under
every URI MLflow 3 gives it and scores a video's clips exactly as hlp does, carries its signature
and input example, becomes a registry version with `tracking.register`; and `hlp predict
--model` reads them without unpickling anything.

The end-to-end `hlp predict --model models:/NAME/1` on a real video is in test_prediction.py,
whose trained store it shares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from ray_processes import isolated_env
from support import EXPERIMENTS
from typer.testing import CliRunner

from hlp.cli import app
from hlp.data.datasets import load_dataset
from hlp.predict.mlflow_model import load_model
from hlp.predict.predict import score_clips
from hlp.train import model_file

# Sliding windows with overlap on l2-normalised features (youtube.yaml): the scoring a pyfunc
# must reproduce is not the trivial one-pass case.
TINY = ["model.d_model=16", "model.heads=2", "model.d_k=16", "model.d_v=16", "model.ffn_dim=32", "model.layers=1",
        "train.seeds=[0]", "train.threads=1", "train.epochs=2", "train.window=6", "eval.stride=3",
        "eval.scoring=sliding", "eval.selection=carve", "tracking.experiment=mlflow-model",
        "tracking.register=hl-test"]
DOMAINS = ("synth_a", "synth_b")


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """`hlp predict --model` in-process sets MLflow's global URIs; the next test starts without."""
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)  # which set_registry_uri(None) leaves exported


@pytest.fixture(scope="module")
def logged(tmp_path_factory, synth_root):
    """One tiny `hlp train` on the synthetic set into a SQLite store: (work dir, store URI, run id)."""
    work = tmp_path_factory.mktemp("mlflow-model")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    sets = [f"data.root={synth_root}", *TINY, f"tracking.uri={uri}", f"resources.storage_path={work / 'ray'}"]
    result = subprocess.run([sys.executable, "-m", "hlp.cli", "train", str(EXPERIMENTS / "youtube.yaml"),
                             *[x for s in sets for x in ("--set", s)], "--output", str(work / "out")],
                            cwd=work, env=isolated_env(str(tmp_path_factory.mktemp("r"))), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("mlflow-model").experiment_id])
    return work, uri, run.info.run_id


def _logged_models(uri: str, run_id: str) -> dict[str, object]:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_run(run_id).info.experiment_id
    return {m.name: m for m in client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")}


@pytest.mark.slow
def test_each_domain_is_an_mlflow_model_that_scores_as_hlp_does(logged, synth_root):
    work, uri, run_id = logged
    models = _logged_models(uri, run_id)
    assert set(models) == {f"model-{d}" for d in DOMAINS} and {m.status.name for m in models.values()} == {"READY"}
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = {v.tags["domain"]: v for v in client.search_model_versions("name = 'hl-test'")}
    assert set(versions) == set(DOMAINS) and {v.tags["seed"] for v in versions.values()} == {"0"}
    dataset = load_dataset("youtube", str(synth_root))
    test_scores = json.loads((work / "out" / "scores_test.json").read_text())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # as a user of pyfunc.load_model("models:/NAME/N") does; else MLFLOW_REGISTRY_URI decides
    for domain in DOMAINS:
        loaded = model_file.load(str(work / "out" / f"model_{domain}_seed0.pt"))
        assert loaded.scoring == "sliding" and loaded.window == 6 and loaded.stride == 3
        uris = [f"runs:/{run_id}/model-{domain}", f"models:/{models[f'model-{domain}'].model_id}",
                f"models:/hl-test/{versions[domain].version}"]
        assert versions[domain].source == uris[1] and versions[domain].run_id == run_id
        videos = [v for v in test_scores if dataset.videos[v].domain == domain][:2]
        assert videos and all(dataset.videos[v].num_clips > 6 for v in videos)  # more than one window each
        for model_uri in uris:
            pyfunc = mlflow.pyfunc.load_model(model_uri)
            for vid in videos:
                video = dataset.videos[vid]
                got = pyfunc.predict({"visual": video.visual, "audio": video.audio})
                assert got.shape == (video.num_clips,) and got.dtype == np.float32
                assert np.allclose(got, score_clips(loaded, video.visual, video.audio), rtol=0, atol=1e-6)
                assert np.allclose(got, test_scores[vid], rtol=0, atol=1e-6)  # what `hlp train` scored on test


@pytest.mark.slow
def test_the_models_carry_a_signature_and_an_input_example_and_the_run_no_copy(logged, synth_root):
    work, uri, run_id = logged
    mlflow.set_tracking_uri(uri)
    dataset = load_dataset("youtube", str(synth_root))
    for domain in DOMAINS:
        pyfunc = mlflow.pyfunc.load_model(f"runs:/{run_id}/model-{domain}")
        inputs = {s.name: s for s in pyfunc.metadata.signature.inputs.inputs}
        video = next(v for v in dataset.videos.values() if v.domain == domain)
        assert {k: (s.type, s.shape) for k, s in inputs.items()} == {
            "visual": (np.dtype(np.float32), (-1, video.visual.shape[1])),
            "audio": (np.dtype(np.float32), (-1, video.audio.shape[1]))}
        [output] = pyfunc.metadata.signature.outputs.inputs
        assert (output.type, output.shape) == (np.dtype(np.float32), (-1,))
        example = pyfunc.input_example  # two clips of one of the domain's videos, as stored
        assert set(example) == {"visual", "audio"} and example["visual"].shape == (2, video.visual.shape[1])
        assert any(np.array_equal(example["visual"], v.visual[:2]) and np.array_equal(example["audio"], v.audio[:2])
                   for v in dataset.videos.values() if v.domain == domain)
        assert pyfunc.predict(example).shape == (2,)
        with pytest.raises(Exception, match="visual"):  # the signature refuses features of another size
            pyfunc.predict({"visual": video.visual[:, :3], "audio": video.audio})
    # The model file lives in the MLflow Models only: the run keeps no second copy.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert {a.path for a in client.list_artifacts(run_id)} == {"config.yaml", "metrics.json", "scores_test.json",
                                                               "timelines.png"}


@pytest.mark.slow
def test_model_resolves_every_kind_of_uri_to_the_same_model_file(logged, tmp_path, monkeypatch):
    work, uri, run_id = logged
    monkeypatch.chdir(tmp_path)  # where MLflow would make its default ./mlflow.db
    want = model_file.load(str(work / "out" / "model_synth_a_seed0.pt")).meta
    model_id = _logged_models(uri, run_id)["model-synth_a"].model_id
    mlflow.set_tracking_uri(uri)  # download_artifacts alone finds no LoggedModel in the store it is given
    folder = mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp_path / "dl"))
    mlflow.set_tracking_uri(None)  # resolving must not depend on a URI set by someone else
    for given in (f"runs:/{run_id}/model-synth_a", f"models:/{model_id}", "models:/hl-test/1", folder,
                  str(work / "out" / "model_synth_a_seed0.pt"), f"file://{work / 'out' / 'model_synth_a_seed0.pt'}"):
        assert load_model(given, uri).meta == want, given
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_model_refuses_a_pickled_module_by_name(logged, tmp_path, monkeypatch):
    """A model logged with mlflow.pytorch.log_model (a pickled module), and a .pt that is one: the
    refusal `--checkpoint` gives, naming the file inside the model; nothing is unpickled."""
    uri = logged[1]
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    experiment = MlflowClient(uri).create_experiment("pickled", artifact_location=(tmp_path / "pickled").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        mlflow.pytorch.log_model(torch.nn.Linear(2, 1), name="torchy", serialization_format="pickle",
                                 pip_requirements=["torch"], registered_model_name="torchy")
    torch.save(torch.nn.Linear(2, 1), tmp_path / "module.pt")
    mlflow.set_tracking_uri(None)
    runner = CliRunner()
    for given, named in (("models:/torchy/1", "models:/torchy/1/data/model.pth"),
                         (str(tmp_path / "module.pt"), str(tmp_path / "module.pt"))):
        result = runner.invoke(app, ["predict", "video.mp4", "--model", given, "--tracking-uri", uri])
        text = " ".join(result.output.split())
        assert result.exit_code == 2, text
        assert f"{named}: not a safe model file" in text and "torch.nn.modules.linear.Linear" in text, text
        assert "weights_only" not in text, text
    missing = runner.invoke(app, ["predict", "video.mp4", "--model", "models:/hl-test/9", "--tracking-uri", uri])
    assert missing.exit_code == 2 and "--model models:/hl-test/9: Model Version" in " ".join(missing.output.split())


@pytest.mark.parametrize("given, said", [
    ([], "give the model as either --checkpoint FILE or --model URI"),
    (["--checkpoint", "m.pt", "--model", "models:/x/1"], "either --checkpoint FILE or --model URI, not both"),
])
def test_predict_takes_exactly_one_of_checkpoint_and_model(given, said):
    result = CliRunner().invoke(app, ["predict", "video.mp4", *given])
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output


def test_a_model_uri_without_a_tracking_store_is_refused(tmp_path):
    """MLflow would make an empty store there and then find nothing in it."""
    store = tmp_path / "none.db"
    result = CliRunner().invoke(app, ["predict", "video.mp4", "--model", "models:/hl/1",
                                      "--tracking-uri", f"sqlite:///{store}"])
    assert result.exit_code == 2 and f"no tracking store at {store}" in " ".join(result.output.split())
    assert not store.exists()
