"""The round trip a video team makes: extract features from their videos, train on the store,
then score a new video, cut its highlights and get a clear error for a checkpoint that does
not fit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
import yaml
from matplotlib.image import imread
from ray_processes import isolated_env
from support import extraction_yaml, run_extract

from hlp.extract.synth_media import write_test_video
from hlp.predict.summary import segment_rows
from hlp.train import model_file

pytestmark = pytest.mark.slow

TRAIN = ["model.d_model=16", "model.heads=2", "model.d_k=16", "model.d_v=16", "model.ffn_dim=32", "model.layers=1",
         "train.epochs=1", "train.seeds=[0]", "train.threads=1", "train.window=3", "train.batch_size=4"]
SPANS = [(2.0, 4.0), (4.0, 6.0), (0.0, 2.0)]  # one highlight clip per 6 s video


def _table_rows(stderr: str) -> list[tuple[str, ...]]:
    """The body rows of the rich tables in `stderr`, as their stripped cells."""
    return [tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in stderr.splitlines()
            if line.startswith("│")]


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _hlp(*args: str, ray_tmpdir: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hlp.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**isolated_env(ray_tmpdir), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}, timeout=900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """8 labelled videos -> `hlp extract` -> annotations in the YouTube layout -> `hlp train`."""
    work = tmp_path_factory.mktemp("roundtrip")
    ray_tmpdir = str(tmp_path_factory.mktemp("r"))
    videos, annotations = work / "videos", {}
    videos.mkdir()
    for i in range(8):
        span = SPANS[i % len(SPANS)]
        write_test_video(videos / f"v{i}.mp4", 6.0, highlights=[span], seed=i)
        annotations[f"v{i}"] = {"domain": "demo", "match": [1 if k * 2.0 == span[0] else -1 for k in range(3)]}
    labels = work / "labels" / "youtube"
    labels.mkdir(parents=True)
    (labels / "youtube_anno.json").write_text(json.dumps(annotations))
    (labels / "splits.json").write_text(json.dumps({"demo": {"train": [f"v{i}" for i in range(6)],
                                                             "val": ["v6", "v7"]}}))
    config = extraction_yaml(work / "extract.yaml", str(videos), str(work / "store"))
    result = run_extract(config, ray_tmpdir)
    assert result.returncode == 0, result.stderr[-3000:]
    sets = [*TRAIN, "data.format=parquet", f"data.features={work / 'store'}", f"data.root={work / 'labels'}",
            f"tracking.uri=sqlite:///{work / 'mlflow.db'}", f"resources.storage_path={work / 'ray_results'}",
            "tracking.register=demo-highlights"]
    train = _hlp("train", str(Path(__file__).parents[2] / "experiments" / "quickstart.yaml"),
                 *[x for s in sets for x in ("--set", s)], "--output", str(work / "out"), ray_tmpdir=ray_tmpdir, cwd=work)
    assert train.returncode == 0, train.stderr[-3000:]
    return work, ray_tmpdir


def test_predict_scores_every_clip_and_cuts_a_reel(trained, tmp_path):
    work, ray_tmpdir = trained
    model = work / "out" / "model_demo_seed0.pt"
    content = torch.load(model, weights_only=True)  # the safe loader reads it
    assert content["features"]["visual"]["name"] == "r3d_18" and content["features"]["clip_seconds"] == 2.0
    new = tmp_path / "new.mp4"
    write_test_video(new, 9.0, highlights=[(4.0, 6.0)], seed=99)
    result = _hlp("predict", str(new), "--checkpoint", str(model), "--top-k", "2", "--out", str(tmp_path / "r.json"),
                  "--reel", str(tmp_path / "reel.mp4"), ray_tmpdir=ray_tmpdir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "r.json").read_text())
    assert set(out) == {"video", "video_id", "checkpoint", "domain", "duration_s", "has_audio", "clip_seconds",
                        "extractors", "selection", "clips", "segments", "reel"}  # the contract: nothing added
    assert [c["clip_index"] for c in out["clips"]] == [0, 1, 2, 3, 4]  # 9 s: four clips and a padded fifth
    assert out["clips"][-1]["end_s"] == pytest.approx(9.0, abs=0.05) and out["duration_s"] == pytest.approx(9.0, abs=0.05)
    assert all(0.0 <= c["score"] <= 1.0 for c in out["clips"])
    best_two = sorted(sorted(out["clips"], key=lambda c: -c["score"])[:2], key=lambda c: c["clip_index"])
    covered = [i for s in out["segments"] for i in s["clips"]]
    assert covered == [c["clip_index"] for c in best_two]
    for segment in out["segments"]:
        assert segment["start_s"] == out["clips"][segment["clips"][0]]["start_s"]
        assert segment["end_s"] == out["clips"][segment["clips"][-1]]["end_s"]
    with av.open(str(tmp_path / "reel.mp4")) as reel:
        assert {s.type for s in reel.streams} == {"video", "audio"}
        frames = sum(1 for _ in reel.decode(video=0))
    expected = sum(s["end_s"] - s["start_s"] for s in out["segments"])
    assert frames / 24 == pytest.approx(expected, abs=0.1)
    assert out["reel"]["duration_s"] == pytest.approx(expected, abs=0.1)
    assert _table_rows(result.stderr) == segment_rows(out) and len(segment_rows(out)) == len(out["segments"])
    beside = tmp_path / "r.timeline.png"  # --out r.json: the timeline lands next to it
    assert _png_size(beside) == (1000, 500) and f"wrote{beside}" in "".join(result.stderr.split())  # however wrapped
    assert imread(beside).std() > 0.05  # a drawn figure, not a blank page

    drawn = tmp_path / "every.png"
    threshold = _hlp("predict", str(new), "--checkpoint", str(model), "--threshold", "0.0", "--timeline", str(drawn),
                     ray_tmpdir=ray_tmpdir, cwd=tmp_path)
    assert threshold.returncode == 0, threshold.stderr[-3000:]
    every = json.loads(threshold.stdout)  # stdout is still the JSON alone: the table went to stderr
    assert every["segments"] == [{"start_s": 0.0, "end_s": every["duration_s"], "clips": [0, 1, 2, 3, 4],
                                  "score": pytest.approx(sum(c["score"] for c in every["clips"]) / 5)}]
    length, mean = f"{every['duration_s']:.2f}", f"{every['segments'][0]['score']:.3f}"
    assert _table_rows(threshold.stderr) == [("#1", "0.00", length, length, mean, "0-4")]
    assert _png_size(drawn) == (1000, 500)


def test_a_checkpoint_that_does_not_fit_is_refused_by_name(trained, tmp_path):
    from typer.testing import CliRunner

    from hlp.cli import app

    work = trained[0]
    model = work / "out" / "model_demo_seed0.pt"
    video = work / "videos" / "v0.mp4"
    content = torch.load(model, weights_only=True)
    wrong = {**content, "features": {**content["features"],
                                     "visual": {**content["features"]["visual"], "name": "r2plus1d_18", "dim": 400}}}
    model_file.save(str(tmp_path / "wrong.pt"), wrong)
    umt = {**content, "features": None}
    model_file.save(str(tmp_path / "umt.pt"), umt)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases = {
        "wrong.pt": "takes 512-d visual",
        "umt.pt": "UMT release's features",
        "junk.pt": "not a loadable checkpoint",
    }
    runner = CliRunner()  # in-process: prediction starts no Ray
    for name, message in cases.items():
        result = runner.invoke(app, ["predict", str(video), "--checkpoint", str(tmp_path / name)])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), (name, result.output)
    both = runner.invoke(app, ["predict", str(video), "--checkpoint", str(model), "--top-k", "1", "--threshold", "0.5"])
    assert both.exit_code == 2 and "not both" in both.output
    broken = tmp_path / "broken.mp4"
    broken.write_text("text")
    bad_video = runner.invoke(app, ["predict", str(broken), "--checkpoint", str(model)])
    text = " ".join(bad_video.output.split())
    assert bad_video.exit_code == 2 and "broken.mp4" in text and "not a video file" in text


def test_predict_with_a_registered_model_gives_what_its_checkpoint_gives(trained, tmp_path):
    """`--model models:/NAME/1` (tracking.register) through the store named by MLFLOW_TRACKING_URI:
    the same clips and scores as `--checkpoint` with the model file `hlp train` wrote."""
    import mlflow
    from typer.testing import CliRunner

    from hlp.cli import app

    work = trained[0]
    new = tmp_path / "new.mp4"
    write_test_video(new, 9.0, highlights=[(4.0, 6.0)], seed=99)
    runner = CliRunner(env={"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"})  # in-process: no Ray
    try:
        results = {}
        for option, given in (("--model", "models:/demo-highlights/1"),
                              ("--checkpoint", str(work / "out" / "model_demo_seed0.pt"))):
            result = runner.invoke(app, ["predict", str(new), option, given])  # no --out: no timeline to draw
            assert result.exit_code == 0, result.output[-3000:]
            results[option] = json.loads(result.stdout)
    finally:
        mlflow.set_tracking_uri(None)  # what resolving the URI set in this process
        mlflow.set_registry_uri(None)
    by_model, by_checkpoint = results["--model"], results["--checkpoint"]
    assert by_model["checkpoint"] == "models:/demo-highlights/1" and by_model["domain"] == "demo"
    assert {k: v for k, v in by_model.items() if k != "checkpoint"} == \
        {k: v for k, v in by_checkpoint.items() if k != "checkpoint"}


def test_training_on_the_store_records_the_extractors_in_mlflow(trained):
    from mlflow.tracking import MlflowClient

    work = trained[0]
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.params["data.format"] == "parquet"
    assert run.data.params["data.features"] == str(work / "store")
    assert run.data.tags["visual_extractor"] == "r3d_18@random-seed0"
    assert run.data.tags["audio_extractor"] == "cnn14@random-seed0"
    assert yaml.safe_load((work / "out" / "config.yaml").read_text())["data"]["format"] == "parquet"


@pytest.mark.parametrize("option, target", [("--out", "missing/result.json"), ("--reel", "missing/reel.mp4"),
                                            ("--timeline", "missing/timeline.png")])
def test_an_output_in_a_missing_folder_is_refused_before_predicting(tmp_path, option, target):
    """Checked first: the checkpoint does not even exist, and the error is still about the folder."""
    write_test_video(tmp_path / "new.mp4", 4.0)
    result = subprocess.run([sys.executable, "-m", "hlp.cli", "predict", "new.mp4", "--checkpoint", "none.pt",
                             option, target], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    text = " ".join(result.stderr.split())
    assert result.returncode == 2 and f"{option} {target}: folder missing does not exist" in text, text
    assert "checkpoint not found" not in text
