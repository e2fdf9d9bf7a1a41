"""Peak memory of `hlp extract` for 10 videos against 40: it must not grow with their number.

    python benchmarks/extract_memory.py [--seconds 6]

Each run starts its own Ray cluster under a private RAY_TMPDIR; the peak is the largest sum of
the proportional memory (PSS, so shared pages count once) of every process of that job (driver, raylet, workers, actors),
sampled every 0.2 s, plus the object store's use. The videos stream through: decoding holds
one chunk of one video at a time per task, and Ray Data's backpressure bounds what waits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hlp.extract.synth_media import write_test_video

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from ray_processes import kill_processes, processes  # noqa: E402 - the fault tests' process finder


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size: shared pages (the object store is shared memory) count once in all."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/smaps_rollup").read_text().split("\nPss:")[1].split()
            total += int(fields[0]) * 1024
        except (OSError, IndexError):
            continue
    return total


def peak_memory(folder: Path, count: int, work: Path) -> tuple[int, float]:
    config = work / f"extract{count}.yaml"
    config.write_text(yaml.safe_dump({"inputs": str(folder / f"set{count}"), "output": str(work / f"store{count}"),
                                      "visual": {"name": "r3d_18", "weights": "random"},
                                      "audio": {"name": "cnn14", "weights": "random"},
                                      "resources": {"batch_size": 8}}))
    ray_tmpdir = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmpdir, "RAY_ADDRESS": "", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    start = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "hlp.cli", "extract", str(config)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while job.poll() is None:
        peak = max(peak, pss_bytes(processes(ray_tmpdir) + [job.pid]))
        time.sleep(0.2)
    assert job.returncode == 0, f"extraction of {count} videos failed"
    kill_processes(ray_tmpdir, signal.SIGKILL)  # the job's cluster, left running by its driver
    return peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for count in (10, 40):
            (work / f"set{count}").mkdir()
            for i in range(count):
                write_test_video(work / f"set{count}" / f"v{i:03d}.mp4", args.seconds, size=(240, 320), seed=i)
        results = {count: peak_memory(work, count, work) for count in (10, 40)}
    for count, (peak, wall) in results.items():
        print(f"{count:3d} videos: peak PSS of the whole job {peak / 2**30:.2f} GiB ({wall:.0f} s)")
    print(f"peak(40) / peak(10) = {results[40][0] / results[10][0]:.2f}")


if __name__ == "__main__":
    main()
