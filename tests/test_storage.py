"""What a command says it kept (hlp/storage.py): sizes of local and S3 paths, in words and bytes."""

from __future__ import annotations

import s3fs

from hlp.storage import human_bytes, kept_lines, size_of


def test_sizes_read_exactly_and_in_words():
    assert human_bytes(12) == "12 bytes"
    assert human_bytes(56_098_816) == "53.5 MB (56,098,816 bytes)"
    assert human_bytes(3 * 2**30) == "3.0 GB (3,221,225,472 bytes)"


def test_what_is_kept_is_measured_and_what_is_missing_is_not_said(tmp_path):
    (tmp_path / "run" / "checkpoint_000001").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint_000001" / "results.pt").write_bytes(b"x" * 1000)
    (tmp_path / "model.pt").write_bytes(b"y" * 24)
    assert size_of(str(tmp_path / "run")) == 1000 and size_of(str(tmp_path / "model.pt")) == 24
    assert size_of(str(tmp_path / "nowhere")) == 0
    assert kept_lines({"a run": str(tmp_path / "run"), "a model": str(tmp_path / "model.pt"),
                       "nothing": str(tmp_path / "nowhere")}) == [
        f"kept: a run: {tmp_path / 'run'}, 1000 bytes", f"kept: a model: {tmp_path / 'model.pt'}, 24 bytes"]


def test_sizes_on_s3_come_without_downloading(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    if not fs.exists("hlp-kept"):
        fs.mkdir("hlp-kept")
    fs.pipe_file("hlp-kept/sweep/trial/a.pt", b"z" * 2048)
    fs.pipe_file("hlp-kept/sweep/b.json", b"{}")
    assert size_of("s3://hlp-kept/sweep") == 2050
