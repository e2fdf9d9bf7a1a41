"""hlp.tracking against a real SQLite store: runs that log the same dataset inputs at once (a
sweep's two final runs, trials side by side) all record them, and the dataset is stored once."""

from __future__ import annotations

import threading

from hlp.data.inputs import DataInput
from hlp.tracking import EXPERIMENT_KIND, Tracker


def test_runs_logging_the_same_inputs_at_once_all_record_them(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    inputs = [DataInput(f"youtube/d{k}", f"digest{k}{context}", str(tmp_path), context, {"videos": 3})
              for k in range(4) for context in ("training", "validation")]
    parent = Tracker(uri, "race", "parent", {})
    runs = [Tracker(uri, "race", f"run{i}", {}, parent_run_id=parent.run_id) for i in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(runs))

    def log(run: Tracker) -> None:
        start.wait()
        try:
            run.log_inputs(inputs)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    for run in runs:
        logged = run.client.get_run(run.run_id).inputs.dataset_inputs
        assert sorted((i.dataset.name, i.tags[0].value) for i in logged) == sorted((i.name, i.context) for i in inputs)
    experiment = parent.client.get_experiment_by_name("race")
    assert experiment.tags.items() >= EXPERIMENT_KIND.items()
