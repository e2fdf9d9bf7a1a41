"""`hlp evaluate`'s checks of a scores file: every value a number, and the video named when not."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from hlp.data.datasets import load_dataset
from hlp.data.protocols import held_out_ids
from hlp.evaluate.evaluation import ScoresError, evaluate_scores


def _scores(dataset, domain: str) -> dict[str, list[float]]:
    """A valid scores file for every test video of one domain."""
    return {vid: [0.5] * dataset.videos[vid].num_clips for vid in held_out_ids(dataset, "umt", domain)}


@pytest.mark.parametrize("bad, needle", [
    (lambda n: ["a"] * n, "score 0 is 'a' (str), not a number"),
    (lambda n: [True] * n, "score 0 is True (bool), not a number"),
    (lambda n: [0.5] * (n - 1) + [None], "score {last} is None (NoneType), not a number"),
    (lambda n: "0.5", "expected a list of scores (one number per clip), got str"),
])
def test_a_score_that_is_not_a_number_names_the_video(synth_root, bad, needle):
    dataset = load_dataset("youtube", str(synth_root))
    scores = _scores(dataset, "synth_a")
    victim = sorted(scores)[0]
    scores[victim] = bad(dataset.videos[victim].num_clips)
    needle = needle.format(last=dataset.videos[victim].num_clips - 1)
    with pytest.raises(ScoresError, match=re.escape(f"video {victim}: {needle}")):
        evaluate_scores(dataset, "umt", scores)


def test_hlp_evaluate_refuses_string_scores_by_video_with_exit_2(synth_root, tmp_path):
    dataset = load_dataset("youtube", str(synth_root))
    scores = _scores(dataset, "synth_a")
    victim = sorted(scores)[0]
    scores[victim] = ["a", "b"] + [0.5] * (dataset.videos[victim].num_clips - 2)
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    result = subprocess.run([sys.executable, "-m", "hlp.cli", "evaluate", "youtube", "--data-root", str(synth_root),
                             "--scores", "scores.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    text = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"scores.json: video {victim}: score 0 is 'a' (str), not a number" in text, text
    assert "Traceback" not in result.stderr
