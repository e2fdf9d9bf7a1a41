#!/usr/bin/env bash
# GPU check (issue 22): what one NVIDIA GPU gives hlp, in one Markdown table.
#
#   HLP_DATA_ROOT=../shared/data bash benchmarks/gpu_check.sh      # from the repository root
#   GPU_CHECK_DRY=1 HLP_DATA_ROOT=../shared/data bash benchmarks/gpu_check.sh   # no GPU: checks the script
#
# On a machine with one NVIDIA GPU (a torch wheel with CUDA; the README's pinned one is the CPU
# wheel), within 8 minutes (each command has its own timeout, and none starts past the budget),
# it prints one table, and exits 1 if a step failed (its row says which log to read):
#   - train: `hlp train` on YouTube parkour (HLP_DATA_ROOT's features, 1 seed, a few epochs),
#     the median seconds of epochs >= 2 (steady state; `seed0.epoch_time_s` in the run's MLflow
#     store): the CPU (use_gpu false, half the cores as torch threads), the GPU in fp32 and in bf16;
#   - sweep: `hlp sweep experiments/hpcl.yaml`, 8 trials with use_gpu and gpus_per_worker 0.125,
#     max_concurrent 8: how many trials ran at once (the MLflow trial runs' start and end times),
#     what the limiter said, and the GPU utilisation nvidia-smi sampled every 500 ms during it;
#   - extract: `hlp extract` clips/s in fp32 and in bf16 on the GPU, random weights, copies of one
#     synthetic H.264 + AAC video: end to end (the summary's clips over its seconds, Ray's start
#     included) and steady (after the first video, from the manifest's finish times).
# GPU_CHECK_DRY=1 runs the same steps on the CPU with tiny sizes (use_gpu false, no nvidia-smi,
# a tiny model, threads 1), so its figures say nothing about speed: it checks the script.
# Everything goes into one temp folder (kept, named at the end; GPU_CHECK_DIR picks it).
set -euo pipefail

DRY=${GPU_CHECK_DRY:-0}
PY=${PYTHON:-python}
DATA=$(cd "${HLP_DATA_ROOT:-../shared/data}" 2>/dev/null && pwd) || DATA=""
if [[ -z "$DATA" || ! -f "$DATA/youtube/youtube_anno.json" ]]; then
  echo "gpu_check: HLP_DATA_ROOT (${HLP_DATA_ROOT:-../shared/data}) holds no youtube/youtube_anno.json" >&2
  exit 2
fi
if [[ ! -f experiments/hpcl.yaml ]]; then
  echo "gpu_check: run it from the repository root" >&2
  exit 2
fi
if [[ "$DRY" != 1 ]] && ! timeout 120 "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: torch sees no CUDA GPU (the README's pinned torch is the CPU wheel; GPU_CHECK_DRY=1 checks the script)" >&2
  exit 2
fi
WORK=${GPU_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$WORK"
URI="sqlite:///$WORK/mlflow.db"
export RAY_DATA_DISABLE_PROGRESS_BARS=1

if [[ "$DRY" == 1 ]]; then
  BUDGET_S=1500  # 2 CPUs: Ray's start-ups alone take minutes
  GPU=(resources.use_gpu=false)
  FRACTION=()  # gpus_per_worker is refused without use_gpu
  CPU_THREADS=1
  SIZE=(model.d_model=16 model.heads=2 model.d_k=16 model.d_v=16 model.ffn_dim=32 train.threads=1)
  EPOCHS=2; TRIALS=2; CONCURRENT=2
  VIDEOS=2; VIDEO_S=6; VIDEO_HW=96,128; EXTRACT_GPU=(resources.gpus_per_actor=0 resources.batch_size=4 resources.threads=1)
  T_TRAIN=300; T_SWEEP=600; T_EXTRACT=200
else
  BUDGET_S=450  # + the last step's 10 s kill grace and the table: under 8 minutes
  GPU=(resources.use_gpu=true)
  FRACTION=(resources.use_gpu=true resources.gpus_per_worker=0.125)
  CPU_THREADS=${CPU_THREADS:-$(($(nproc) > 1 ? $(nproc) / 2 : 1))}  # a CPU worker that always fits beside Ray's own
  SIZE=()  # the paper's dimensions, as experiments/youtube.yaml has them
  EPOCHS=6; TRIALS=8; CONCURRENT=8
  VIDEOS=32; VIDEO_S=60; VIDEO_HW=240,320; EXTRACT_GPU=(resources.gpus_per_actor=1 resources.batch_size=32)
  T_TRAIN=90; T_SWEEP=160; T_EXTRACT=60
fi
DEADLINE=$((SECONDS + BUDGET_S))
declare -A RC=()

# step NAME LIMIT_S COMMAND...: run it under `timeout` (never past the budget), output in
# $WORK/NAME.out and .err; its exit status goes to RC[NAME] (124: timed out), and the script goes on.
step() {
  local name=$1 limit=$2 left rc=0
  shift 2
  left=$((DEADLINE - SECONDS))
  if ((left < limit)); then limit=$left; fi
  if ((limit < 15)); then
    RC[$name]=skipped
    echo "gpu_check: $name skipped: the ${BUDGET_S} s budget is spent" >&2
    return 0
  fi
  echo "gpu_check: $name (up to ${limit} s)" >&2
  timeout -k 10 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  RC[$name]=$rc
  if ((rc != 0)); then echo "gpu_check: $name failed (exit $rc): $WORK/$name.err" >&2; fi
}

# --- train: one domain, one seed, CPU against GPU fp32 and bf16 -----------------------------
# Each run its own name and MLflow run: Ray run names leave `resources` out, so the GPU run
# would otherwise resume the CPU run's checkpoint and train nothing.
TRAIN_SETS=("data.root=$DATA" "data.domains=[parkour]" "train.seeds=[0]" "train.epochs=$EPOCHS"
            eval.selection=carve "tracking.uri=$URI" tracking.experiment=gpu-check-train
            "resources.storage_path=$WORK/ray_results" "${SIZE[@]}")
train() {  # train LABEL SET...
  local label=$1 args=()
  shift
  for s in "${TRAIN_SETS[@]}" "name=gc-train-$label" "$@"; do args+=(--set "$s"); done
  step "train-$label" "$T_TRAIN" "$PY" -m hlp.cli train experiments/youtube.yaml "${args[@]}" \
    --output "$WORK/train-$label"
}
cpu_sets=(resources.use_gpu=false)
if [[ "$DRY" != 1 ]]; then cpu_sets+=("resources.cpus_per_worker=$CPU_THREADS" "train.threads=$CPU_THREADS"); fi
train cpu "${cpu_sets[@]}"
train gpu-fp32 "${GPU[@]}" train.precision=fp32
train gpu-bf16 "${GPU[@]}" train.precision=bf16

# --- sweep: 8 trials sharing the GPU, its utilisation sampled meanwhile ----------------------
SMI_PID=""
if [[ "$DRY" != 1 ]]; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    >"$WORK/nvidia-smi.csv" 2>"$WORK/nvidia-smi.err" &
  SMI_PID=$!
fi
sweep_args=()
for s in "data.root=$DATA" "data.domains=[parkour]" "search.num_samples=$TRIALS" "search.max_concurrent=$CONCURRENT" \
         "search.seeds=[0]" "train.seeds=[0]" "train.epochs=2" search.grace_period=1 search.bootstrap=100 \
         "tracking.uri=$URI" tracking.experiment=gpu-check-sweep "resources.storage_path=$WORK/ray_results" \
         "${FRACTION[@]}" "${SIZE[@]}"; do
  sweep_args+=(--set "$s")
done
SWEEP_START=$SECONDS
step sweep "$T_SWEEP" "$PY" -m hlp.cli sweep experiments/hpcl.yaml "${sweep_args[@]}" --output "$WORK/sweep"
SWEEP_WALL=$((SECONDS - SWEEP_START))
if [[ -n "$SMI_PID" ]]; then kill "$SMI_PID" 2>/dev/null || true; wait "$SMI_PID" 2>/dev/null || true; fi

# --- extract: clips/s of `hlp extract`, fp32 and bf16 ---------------------------------------
step videos 60 "$PY" - "$WORK/videos" "$VIDEOS" "$VIDEO_S" "$VIDEO_HW" <<'EOF'
"""One synthetic H.264 + AAC video, copied: decoding costs the same, and it is written once."""
import shutil
import sys
from pathlib import Path

from hlp.extract.synth_media import write_test_video

folder, count, seconds, (height, width) = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), map(int, sys.argv[4].split(","))
folder.mkdir(parents=True, exist_ok=True)
write_test_video(folder / "v000.mp4", seconds, size=(height, width), highlights=[(2.0, 4.0)])
for i in range(1, count):
    shutil.copy(folder / "v000.mp4", folder / f"v{i:03d}.mp4")
EOF
for precision in fp32 bf16; do
  bf16=false
  if [[ $precision == bf16 ]]; then bf16=true; fi
  extract_args=()
  for s in "inputs=$WORK/videos" "output=$WORK/features-$precision" visual.weights=random audio.weights=random \
           "resources.bf16=$bf16" "${EXTRACT_GPU[@]}"; do
    extract_args+=(--set "$s")
  done
  step "extract-$precision" "$T_EXTRACT" "$PY" -m hlp.cli extract experiments/extract.yaml "${extract_args[@]}"
done

# --- the table ----------------------------------------------------------------------------
status=$(for k in "${!RC[@]}"; do echo "$k=${RC[$k]}"; done)
GC_WORK=$WORK GC_DRY=$DRY GC_STATUS=$status GC_SWEEP_WALL=$SWEEP_WALL GC_CPU_THREADS=$CPU_THREADS \
GC_EPOCHS=$EPOCHS GC_TRIALS=$TRIALS GC_CONCURRENT=$CONCURRENT "$PY" - <<'EOF'
import calendar
import json
import os
import statistics
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from hlp.data.feature_store import FeatureStore

work, dry = Path(os.environ["GC_WORK"]), os.environ["GC_DRY"] == "1"
status = dict(line.split("=", 1) for line in os.environ["GC_STATUS"].split())
client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")


def failed(name):
    rc = status.get(name, "not run")
    if rc == "0":
        return None
    why = {"124": "timed out", "skipped": "skipped: out of time", "not run": "not run"}.get(rc, f"exit {rc}")
    return f"{why} ({work / (name + '.err')})"


def runs(experiment):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def epoch_time(label):
    run = next((r for r in runs("gpu-check-train") if r.info.run_name == f"gc-train-{label}"), None)
    if run is None:
        return None, "no MLflow run"
    history = client.get_metric_history(run.info.run_id, "seed0.epoch_time_s")
    steady = [m.value for m in history if m.step >= 2]
    if not steady:
        return None, "no epoch >= 2 logged"
    return statistics.median(steady), f"median of epochs 2-{max(m.step for m in history)} ({len(steady)})"


rows = []
times = {}
gpu = "CPU (dry run)" if dry else "GPU"
labels = {"cpu": f"CPU, use_gpu false, {os.environ['GC_CPU_THREADS']} thread(s)", "gpu-fp32": f"{gpu}, fp32",
          "gpu-bf16": f"{gpu}, bf16 autocast"}
for label, setting in labels.items():
    why = failed(f"train-{label}")
    seconds, note = epoch_time(label) if why is None else (None, why)
    times[label] = seconds
    if seconds and label != "cpu" and times.get("cpu"):
        note += f"; {times['cpu'] / seconds:.1f}x the CPU"
    if seconds and label == "gpu-bf16" and times.get("gpu-fp32"):
        note += f", {times['gpu-fp32'] / seconds:.2f}x fp32"
    rows.append(("train parkour, 1 seed", setting, "epoch s", f"{seconds:.2f}" if seconds else "-", note))

why = failed("sweep")
trials = [r for r in runs("gpu-check-sweep") if "trial_id" in r.data.tags]
spans = [(r.info.start_time, r.info.end_time or r.info.start_time) for r in trials]
together = max((sum(1 for s, e in spans if s <= t < e) for t, _ in spans), default=0)
limiter = [line.strip() for line in (work / "sweep.err").read_text(errors="replace").splitlines()
           if "search.max_concurrent" in line and "->" in line] if (work / "sweep.err").exists() else []
fraction = "CPU (dry run), use_gpu false" if dry else "GPU, 0.125 GPU per worker"
note = (why + "; " if why else "") + f"{len(trials)} trial runs, sweep {os.environ['GC_SWEEP_WALL']} s; limiter: " + (
    "; ".join(limiter) if limiter else f"kept {os.environ['GC_CONCURRENT']}")
rows.append((f"sweep hpcl, {os.environ['GC_TRIALS']} trials, max_concurrent {os.environ['GC_CONCURRENT']}",
             fraction, "trials at once", str(together), note))
samples = []
smi = work / "nvidia-smi.csv"
if smi.exists():
    for line in smi.read_text().splitlines():
        try:
            util, memory = (float(x) for x in line.split(","))
        except ValueError:
            continue
        samples.append((util, memory))
if samples:
    utils = [u for u, _ in samples]
    rows.append(("sweep (same)", "GPU utilisation, nvidia-smi every 500 ms", "mean / max %",
                 f"{statistics.mean(utils):.0f} / {max(utils):.0f}",
                 f"{len(samples)} samples; memory max {max(m for _, m in samples):.0f} MiB"))
else:
    rows.append(("sweep (same)", "GPU utilisation", "mean / max %", "-", "dry run: not sampled" if dry else
                 f"no nvidia-smi samples ({work / 'nvidia-smi.err'})"))

for precision in ("fp32", "bf16"):
    why = failed("videos") or failed(f"extract-{precision}")
    value, note = "-", why or ""
    if why is None:
        text = (work / f"extract-{precision}.out").read_text()
        summary = json.loads(text[text.index("{"):])  # stdout: the JSON summary
        # Steady state: the clips of the videos after the first over the time between the first and
        # the last to finish (the manifest's finish times, to the second): Ray's start left out.
        done = sorted((calendar.timegm(time.strptime(e["finished_at"], "%Y-%m-%dT%H:%M:%SZ")), e["clips"])
                      for e in FeatureStore.open(summary["store"]).manifest().values() if e["status"] == "done")
        span = done[-1][0] - done[0][0] if done else 0
        steady = f"{sum(c for _, c in done[1:]) / span:.1f}" if span >= 2 else "-"
        value = f"{summary['clips'] / summary['seconds']:.1f}; {steady}"
        note = (f"{summary['clips']} clips, {summary['done']} videos in {summary['seconds']} s; "
                f"steady: after the first video ({span:.0f} s)")
    rows.append(("hlp extract, r3d_18 + Cnn14, random weights", f"{gpu}, {precision}",
                 "clips/s: end to end; steady", value, note))

print(f"\n{'DRY RUN (CPU, tiny sizes: checks the script, measures nothing) ' if dry else ''}gpu_check, files in {work}\n")
print("| part | setting | figure | value | notes |")
print("|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
EOF
for k in "${!RC[@]}"; do
  if [[ "${RC[$k]}" != 0 ]]; then exit 1; fi
done
