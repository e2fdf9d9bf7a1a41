"""What a person watching a command sees (issue 23): without -v, hlp's own lines only, in order,
each run's epochs labelled where runs train side by side; with -v, Ray's, Tune's and Optuna's
logs as well. (The quiet sweep's checks ride on the DDP sweep of tests/sweep/test_sweep_ddp.py.)"""

from __future__ import annotations

import pickle
import re
import subprocess
import threading

import pytest
from ray_processes import isolated_env
from support import extraction_yaml, run_extract, sweep_command

from hlp.cli import NATIVE_LOG_LINE
from hlp.train.progress import labelled, with_label


class _Trial:
    trial_id = "1a2b"


def test_the_driver_says_each_trials_epochs_from_tunes_results_and_its_notes():
    from hlp.sweep.replicas import NOTE
    from hlp.sweep.trial import EpochLines

    said: list[str] = []
    lock = threading.Lock()  # a log that cannot be pickled, as the CLI's console cannot

    def log(line: str) -> None:
        with lock:
            said.append(line)

    lines = EpochLines("hpcl", 3, log)
    lines.on_trial_start(0, [], _Trial())
    lines.on_trial_result(0, [], _Trial(), {"epoch": 0, "val_map": 0.5, "time_total_s": 1.0})
    lines.on_trial_result(0, [], _Trial(), {"epoch": 1, "seed0.a.loss_total": 2.0, "seed0.b.loss_total": 4.0,
                                            "val_map": 0.6, NOTE: "a replica's process was lost"})
    lines.on_trial_result(0, [], _Trial(), {"epoch": 3, "val_map": 0.7})  # the replicas' last epoch (not JUDGED)
    lines.on_trial_result(0, [], _Trial(), {"final": 1, "val_map": 0.7})  # the final report: no line
    assert said[0].startswith("trial hpcl-1a2b | epoch 0/3 | val mAP 0.500 | "), said
    assert said[1] == "trial hpcl-1a2b: a replica's process was lost", said
    assert said[2].startswith("trial hpcl-1a2b | epoch 1/3 | loss 3.000 | val mAP 0.600 | "), said
    assert said[3].startswith("trial hpcl-1a2b | epoch 3/3 | val mAP 0.700 | ") and said[3].endswith("| done")
    assert len(said) == 4
    # Tune pickles its callbacks with the sweep's state; a resumed sweep says its lines on stderr.
    restored = pickle.loads(pickle.dumps(lines))
    assert (restored.sweep_name, restored.epochs) == ("hpcl", 3) and restored._log is not log


def test_a_runs_label_prefixes_its_lines_once_and_only_in_its_own_thread():
    assert with_label("seed 0 | epoch 1/3") == "seed 0 | epoch 1/3"
    assert labelled("best", lambda: with_label(with_label("seed 0 | epoch 1/3")))() == "[best] seed 0 | epoch 1/3"
    seen: dict[str, str] = {}

    def run(role: str) -> None:
        seen[role] = labelled(role, lambda: with_label("kept: x"))()

    threads = [threading.Thread(target=run, args=(role,)) for role in ("best", "defaults")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"best": "[best] kept: x", "defaults": "[defaults] kept: x"}
    assert with_label("wrote out") == "wrote out"  # nothing leaks out of a labelled call


@pytest.mark.parametrize("line, native", [
    (b"[2026-12-08 02:59:15,429 E 13479 13479] core_worker.cc:2465: Actor with class name: 'MapWorker'", True),
    (b"[2026-12-08 03:02:27,211 I 19053 19053] logging.cc:303: Set ray log level", True),
    (b"E1208 02:59:15.429817  13479 chttp2_transport.cc:1234] ipv4:127.0.0.1: Connection reset", True),
    (b"1 videos: 0 already done, 1 to extract into store", False),
    (b"[best] seed 0 | epoch 3/8 | loss 2.947 | val mAP 0.447 | 0:00:01 elapsed | done", False),
    (b"[I 2026-12-08 02:55:38,706] A new study created in memory with name: optuna", False),
    (b"Traceback (most recent call last):", False),
])
def test_only_the_lines_of_rays_native_code_are_dropped(line, native):
    assert bool(NATIVE_LOG_LINE.match(line)) == native


def _merged(command: list[str], cwd, env) -> subprocess.CompletedProcess:
    """The command's stdout and stderr in one stream, in the order they were written."""
    return subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)


@pytest.mark.slow
def test_with_verbose_a_sweep_shows_ray_tune_and_optuna_and_still_labels_its_runs(tmp_path, synth_root, ray_tmpdir):
    command = sweep_command(synth_root, "search.num_samples=1", "train.epochs=1", "search.grace_period=1")
    command.insert(command.index("sweep"), "-v")
    result = _merged(command, tmp_path, isolated_env(ray_tmpdir))
    said = result.stdout
    assert result.returncode == 0, said[-3000:]
    assert "Trial status" in said and "A new study created" in said, said[-3000:]  # Tune's tables, Optuna's notes
    assert "TrainingReport(" in said  # what Ray Train's workers log, forwarded
    assert "across cluster]" not in said  # every forwarded line once, none held back as "[repeated 5x ...]"
    assert "unresolved search space" not in said  # hlp hands Optuna its own distributions
    assert re.search(r"^trial hpcl-\w+ \| epoch 1/1 \| loss ", said, re.M), said[-3000:]
    for role in ("best", "defaults"):
        assert re.search(rf"^\[{role}\] seed 0 \| epoch 1/1 \| loss ", said, re.M), said[-3000:]
    assert not re.search(r"^seed 0 \| epoch ", said, re.M)  # no final's line without its label


@pytest.mark.slow
def test_a_quiet_extraction_says_only_hlps_own_lines(tmp_path, ray_tmpdir):
    from hlp.extract.synth_media import write_test_video

    write_test_video(tmp_path / "clip.mp4", 4.5)
    config = extraction_yaml(tmp_path / "extract.yaml", f"{tmp_path}/*.mp4", str(tmp_path / "store"))
    result = run_extract(config, ray_tmpdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for chatter in (" INFO ", " WARNING ", "core_worker.cc", "Progress", "Dataset dataset_", "\x1b["):
        assert chatter not in result.stderr, (chatter, result.stderr[-3000:])
    # Ray Data's plan, as hlp's own line: decoding is a stage of its own, not fused into the model actors.
    assert ("Ray Data plan: InputDataBuffer[Input] -> TaskPoolMapOperator[MapBatches(decode_videos)] -> "
            "ActorPoolMapOperator[MapBatches(EmbedAndWrite)]") in result.stderr, result.stderr[-3000:]
    own = re.compile(r"^(1 videos: |Ray Data plan: |videos |kept: |[│┃┏┡└|+])")
    title = f"extraction into {tmp_path / 'store'}"  # the table's title, wrapped at 80 columns
    assert all(own.match(line) or line.strip() in title for line in result.stderr.splitlines() if line.strip()), \
        result.stderr[-3000:]
