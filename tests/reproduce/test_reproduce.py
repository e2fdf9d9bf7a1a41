"""`hlp reproduce`: the plan of cells, the paired statistics, and one end-to-end run on synthetic
YouTube and TVSum data that is interrupted, resumed, and then checked table by table."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from ray_processes import isolated_env, kill_processes, wait_until

from hlp.config import ConfigError, load_config
from hlp.data.synth import SynthSpec, write_synthetic, write_synthetic_tvsum
from hlp.evaluate.paired import compare
from hlp.reproduce.config import ReproduceConfig
from hlp.reproduce.tables import plan, tables_of

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "reproduce.yaml"
TINY = ["experiment.train.seeds=[0]", "experiment.train.epochs=2", "experiment.model.d_model=16",
        "experiment.model.heads=2", "experiment.model.d_k=16", "experiment.model.d_v=16",
        "experiment.model.ffn_dim=32", "experiment.train.batch_size=4", "bootstrap=200"]


def _config(*sets: str) -> ReproduceConfig:
    return load_config(EXPERIMENT, ["experiment.data.root=/nowhere", *sets], ReproduceConfig)


def _plan(*sets: str):
    rc = _config(*sets)
    return plan(rc, tables_of(rc))


def test_the_plan_covers_every_table_and_shares_identical_configs():
    cells = _plan()
    ids = {c.id for c in cells}
    assert {"table1/co_av/youtube-umt", "table2/co_av/tvsum-umt", "table2/co_av/tvsum-paper",
            "table3/a_only/tvsum-paper", "table4/ce/youtube-umt", "table5/random/tvsum-umt",
            "tablefig3/cr_av_no_hpcl/youtube-umt"} <= ids
    assert not any(c.benchmark.dataset == "youtube" and c.table == "2" for c in cells)
    by_key: dict[str, set[str]] = {}
    for c in cells:
        by_key.setdefault(c.config_key, set()).add(c.id)
    # The paper's full model is Table 1/2's CO-AV and the last row of Tables 3-5: one config per benchmark.
    assert by_key[next(c for c in cells if c.id == "table1/co_av/youtube-umt").config_key] == {
        "table1/co_av/youtube-umt", "table3/co_av/youtube-umt", "table4/ce_hpcl_rank/youtube-umt",
        "table5/mean/youtube-umt"}
    ce = next(c for c in cells if c.id == "table4/ce/youtube-umt").config
    assert (ce.loss.lambda_hpcl, ce.loss.lambda_rank, ce.loss.lambda_ce) == (0.0, 0.0, 1.0)
    assert next(c for c in cells if c.id == "table5/none/tvsum-paper").config.model.global_init == "none"
    assert len({c.config_key for c in cells}) == 11 + 10 + 10  # youtube (with Figure 3's row), tvsum x 2 protocols


def test_a_sweep_summary_adds_a_row_and_a_missing_one_is_named(tmp_path):
    summary = tmp_path / "sweep_summary.json"
    summary.write_text(json.dumps({"best_params": {"loss.lambda_hpcl": 0.5, "model.layers": 1}}))
    cells = _plan(f"sweeps.youtube={summary}", "tables=[1]", "figures=false")
    row = next(c for c in cells if c.row.key == "sweep_best_youtube")
    assert row.config.loss.lambda_hpcl == 0.5 and row.config.model.layers == 1 and row.table == "1"
    assert [t.id for t in tables_of(_config("tables=[4]", "figures=false"))] == ["4"]
    with pytest.raises(ConfigError, match="sweeps.tvsum: sweep summary not found: /no/such.json"):
        _plan("sweeps.tvsum=/no/such.json")


def test_a_typo_in_the_reproduce_yaml_is_refused_with_the_closest_key(tmp_path):
    def run(*sets: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hlp.cli", "reproduce", str(EXPERIMENT),
                               *[x for s in sets for x in ("--set", s)]], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    result = run("experiment.train.epoch=2")
    text = result.stderr.replace("\n", "")
    assert result.returncode == 2 and "unknown key 'experiment.train.epoch'" in text
    assert "did you mean 'experiment.train.epochs'" in text
    result = run("tables=[6]")
    assert result.returncode == 2 and "tables.0" in result.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()  # refused before any work


def _aps(rng, videos: int, shift: float, seeds=(0, 1, 2)) -> dict:
    return {s: {f"v{i}": float(a) for i, a in enumerate(rng.uniform(0.2, 0.8, videos) + shift)} for s in seeds}


def test_paired_comparison_says_holds_reversed_or_not_resolved():
    rng = np.random.default_rng(0)
    worse = {"a": _aps(rng, 20, 0.0), "b": _aps(rng, 20, 0.0)}
    shifted = lambda delta: {d: {s: {v: ap + delta + rng.normal(0, 0.01) for v, ap in aps.items()}  # noqa: E731
                                 for s, aps in by_seed.items()} for d, by_seed in worse.items()}
    better = compare(shifted(0.05), worse, 500)
    assert better["verdict"] == "holds" and better["ci95"][0] > 0 and abs(better["diff"] - 0.05) < 0.01
    assert better["t_p"] is not None and better["t_p"] < 0.05 and len(better["per_seed"]) == 3
    assert compare(shifted(-0.05), worse, 500)["verdict"] == "reversed"
    noise = {d: {s: {v: ap + rng.normal(0, 0.2) for v, ap in aps.items()} for s, aps in by_seed.items()}
             for d, by_seed in worse.items()}
    unclear = compare(noise, worse, 500)
    assert unclear["verdict"] == "not resolved" and unclear["ci95"][0] < 0 < unclear["ci95"][1]


def test_one_test_video_per_domain_resamples_domains_and_one_in_all_is_too_few():
    worse = {d: {0: {"v": 0.5}} for d in "abcdef"}
    better = {d: {0: {"v": 0.5 + 0.1 + 0.01 * i}} for i, d in enumerate("abcdef")}
    result = compare(better, worse, 500)
    assert result["verdict"] == "holds" and result["ci95"][1] > result["ci95"][0] > 0
    assert all(d["verdict"] == "too few test videos" for d in result["domains"].values())
    assert compare({"a": better["a"]}, {"a": worse["a"]}, 500)["verdict"] == "too few test videos"


# ---------------------------------------------------------------------------------------------
# End to end: interrupted, resumed, re-rendered.


@pytest.fixture(scope="module")
def repro_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repro-data")
    write_synthetic(str(root), SynthSpec(videos_per_domain=10, min_clips=16, max_clips=30, rgb_dim=8, audio_dim=16))
    write_synthetic_tvsum(str(root), SynthSpec(domains=("SA", "SB"), videos_per_domain=5, min_clips=22,
                                               max_clips=40, rgb_dim=8, audio_dim=16))
    return root


def _command(root: Path, tmp: Path, *sets: str) -> list[str]:
    summary = tmp / "sweep_summary.json"
    summary.write_text(json.dumps({"best_params": {"loss.lambda_hpcl": 0.6, "loss.margin": 0.5}}))
    bad = tmp / "bad_sweep_summary.json"  # 16-d attention cannot have 3 heads: that run fails, the rest finish
    bad.write_text(json.dumps({"best_params": {"model.heads": 3}}))
    sets = (f"experiment.data.root={root}", *TINY, f"sweeps.youtube={summary}", f"sweeps.tvsum={bad}", *sets)
    return [sys.executable, "-m", "hlp.cli", "reproduce", str(EXPERIMENT),
            *[x for s in sets for x in ("--set", s)], "--output", "out"]


def test_runs_end_failed_when_ray_cannot_start(tmp_path, repro_root):
    """The report's, tables' and cells' runs exist before Ray starts; a Ray that cannot start
    (a typo in its address) must not leave them RUNNING."""
    result = subprocess.run(_command(repro_root, tmp_path, "experiment.resources.address=127.0.0.1:abc", "tables=[1]"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "port" in result.stderr, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("reproduce").experiment_id], max_results=500)
    assert len(runs) > 3 and {r.info.status for r in runs} == {"FAILED"}


def _unit_files(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "units").glob("*-seed*.json")
            if ".failed" not in p.name and ".partial" not in p.name}


@pytest.mark.slow
def test_reproduce_end_to_end_resumes_and_its_report_matches_its_json(tmp_path, repro_root, ray_tmpdir,
                                                                      two_nodes):  # noqa: F811
    """The first run (its own local Ray) is killed with its cluster; the rerun joins a two-node
    cluster, finishes only what was left, and spreads those runs over both nodes."""
    out = tmp_path / "out"
    first = subprocess.Popen(_command(repro_root, tmp_path, "parallel=1"), cwd=tmp_path, env=isolated_env(ray_tmpdir),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: (out / "units").is_dir() and len(_unit_files(out)) >= 3, first, timeout=300)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    kill_processes(ray_tmpdir, signal.SIGKILL)
    before = _unit_files(out)
    assert not (out / "report.md").exists()

    resumed = subprocess.run(_command(repro_root, tmp_path), cwd=tmp_path, capture_output=True, text=True,
                             timeout=600, env={**os.environ, "RAY_ADDRESS": two_nodes.address})
    assert resumed.returncode == 1, resumed.stderr[-3000:]  # the bad sweep row, and only it
    total = 31 + 3  # distinct configs x 1 seed, plus a sweep-best row on each benchmark
    assert f"{total} runs ({len(before)} already finished, {total - len(before)} to do)" in resumed.stderr
    after = _unit_files(out)
    assert {k: after[k] for k in before} == before  # finished runs were not redone or rewritten
    assert len(after) == total - 2 and len(list((out / "units").glob("*.failed.json"))) == 2
    nodes = {json.loads((out / "units" / name).read_text())["node_id"] for name in set(after) - set(before)}
    assert nodes == {node.node_id for node in two_nodes.list_all_nodes()}  # the cluster ran them in parallel
    said = re.sub(r"\s+", " ", resumed.stderr)
    assert "2 cell(s) incomplete" in said and "table2/sweep_best_tvsum/tvsum-paper" in said
    assert "failed: table2/sweep_best_tvsum/tvsum-umt seed 0: ValueError: d_k=16 and d_v=16 must be divisible by heads=3" in said

    report = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    _check_tables(report, markdown)
    _check_claims_and_figures(report, markdown, out)
    _check_mlflow(tmp_path / "mlflow.db", report)


def _md_rows(markdown: str, heading: str) -> list[list[str]]:
    """The table rows under a `### heading` (up to the next heading)."""
    section = markdown.split(heading, 1)[1].split("\n#", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")][1:]


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:.3f}" + (f" ± {stat['std']:.3f}" if stat["std"] is not None else "")


def _check_tables(report: dict, markdown: str) -> None:
    assert [t["id"] for t in report["tables"]] == ["1", "2", "3", "4", "5", "fig3"]
    assert len(report["trained_at"]) == 1 and report["trained_at"][0] in markdown  # the code the runs came from
    assert set(report["benchmarks"]) == {"youtube-umt", "tvsum-umt", "tvsum-paper"}
    for table in report["tables"]:
        section = markdown.split(f"## {table['title']}", 1)[1]
        for block in table["blocks"]:
            rows = _md_rows(section, f"### {block['benchmark']} ")
            if table["per_domain"]:
                assert [r[0] for r in rows] == [*block["domains"], "**mean (these domains)**"]
                for i, domain in enumerate(block["domains"]):
                    for j, row in enumerate(block["rows"]):
                        cell = row["domains"][domain]
                        if row["complete"]:
                            assert rows[i][1 + 2 * j] == _fmt(cell["val_selected"])
                            assert rows[i][2 + 2 * j] == _fmt(cell["test_selected"])
                            # The optimistic column can only be at least the honest one.
                            assert cell["test_selected"]["mean"] >= cell["val_selected"]["mean"] - 1e-9
            else:
                assert [r[0] for r in rows] == [row["label"] for row in block["rows"]]
                for md, row in zip(rows, block["rows"]):
                    assert md[1] == _fmt(row["mean"]["val_selected"]) and md[2] == _fmt(row["mean"]["test_selected"])
                    assert md[3] == ("–" if row["paper"] is None else f"{row['paper']:.3f}")
                    assert md[4] == ("–" if row["diff_paper"] is None else f"{row['diff_paper']:+.3f}")
    table3 = next(t for t in report["tables"] if t["id"] == "3")
    youtube = next(b for b in table3["blocks"] if b["benchmark"] == "youtube-umt")
    co_av = next(r for r in youtube["rows"] if r["row"] == "co_av")
    assert co_av["paper"] == 0.747 and co_av["diff_paper"] == pytest.approx(co_av["mean"]["val_selected"]["mean"] - 0.747)
    table1 = next(t for t in report["tables"] if t["id"] == "1")
    assert [r["row"] for r in table1["blocks"][0]["rows"]] == ["co_av", "sweep_best_youtube"]
    assert all(r["complete"] for r in table1["blocks"][0]["rows"])


def _check_claims_and_figures(report: dict, markdown: str, out: Path) -> None:
    assert len(report["claims"]) == 9 * 3  # eight ablation claims and the MLP floor, on three benchmarks
    rows = _md_rows(markdown, "## Do the paper's ablation claims hold on this data?")
    for claim, md in zip(report["claims"], rows):
        assert md[1] == claim["statement"] and md[2] == claim["benchmark"]
        assert md[3] == f"{claim['diff']:+.3f}" and md[7] == f"**{claim['verdict']}**"
    assert {f["id"] for f in report["figures"]} == {"tsne", "timelines_youtube-umt", "timelines_tvsum-umt",
                                                    "timelines_tvsum-paper", "pr_youtube-umt", "pr_tvsum-umt",
                                                    "pr_tvsum-paper"}
    for figure in report["figures"]:
        assert f"]({figure['path']})" in markdown
        assert (out / figure["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tsne = next(f for f in report["figures"] if f["id"] == "tsne")
    assert list(tsne["silhouette"]) == ["AV", "CR-AV w/o HPCL", "CR-AV", "CO-AV (ours)"]
    assert all(set(s) == {"synth_a", "synth_b"} for s in tsne["silhouette"].values())
    assert re.search(r"\| CO-AV \(ours\) \| -?\d\.\d{3} \| -?\d\.\d{3} \|", markdown)


def _check_mlflow(db: Path, report: dict) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("reproduce").experiment_id], max_results=500)
    by_parent: dict[str, list] = {}
    for run in runs:
        by_parent.setdefault(run.data.tags.get("mlflow.parentRunId", ""), []).append(run)
    [top] = by_parent[""]
    tables = {r.data.tags["table"]: r for r in by_parent[top.info.run_id]}
    assert set(tables) == {"1", "2", "3", "4", "5", "fig3"}
    cells = [r for t in tables.values() for r in by_parent.get(t.info.run_id, [])]
    assert sorted(r.info.run_name for r in cells) == sorted(c["id"] for c in report["cells"])  # none duplicated
    for run in cells:
        table, row = run.data.tags["table"], run.data.tags["row"]
        assert run.info.run_name.startswith(f"table{table}/{row}/")
        assert run.data.tags["mlflow.parentRunId"] == tables[table].info.run_id
        assert run.info.status == ("FAILED" if row == "sweep_best_tvsum" else "FINISHED")
    co_av = next(r for r in cells if r.info.run_name == "table1/co_av/youtube-umt")
    assert "seed0.synth_a.loss_hpcl" in co_av.data.metrics and "val_selected.mean_test_map" in co_av.data.metrics
    shared = next(r for r in cells if r.info.run_name == "table3/co_av/youtube-umt")
    assert shared.data.tags["trained_in"] == "table1/co_av/youtube-umt"
    assert "youtube-umt.co_av.val_selected" in tables["3"].data.metrics
    assert {"tsne.png"} <= {a.path for a in client.list_artifacts(tables["3"].info.run_id)}
    assert {"report.md", "report.json"} <= {a.path for a in client.list_artifacts(top.info.run_id)}
