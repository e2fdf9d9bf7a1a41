"""hlp.placement: how many Ray Train workers and runs a cluster's nodes hold, and why not."""

from __future__ import annotations

from hlp.config import ResourcesConfig
from hlp.placement import cluster_size, runs_at_once, shortfall, worker_resources, worker_slots

CPU2 = {"CPU": 2.0}


def test_a_worker_never_spans_two_nodes():
    nodes = [{"CPU": 3.0}, {"CPU": 3.0}]
    assert worker_slots(CPU2, nodes) == 2  # 6 CPUs in all, but 1 left over on each node
    assert runs_at_once(CPU2, 1, nodes) == 2
    assert runs_at_once(CPU2, 2, nodes) == 1  # a run's workers may spread over nodes
    assert runs_at_once(CPU2, 3, nodes) == 0


def test_gpus_bind_when_asked():
    need = worker_resources(ResourcesConfig(use_gpu=True, cpus_per_worker=1))
    assert need == {"CPU": 1.0, "GPU": 1.0}
    assert worker_slots(need, [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0}]) == 2
    assert "1 GPU" in cluster_size(need, 1, [{"CPU": 16.0, "GPU": 2.0}])


def test_fractional_cpus_count_exactly():
    assert worker_slots({"CPU": 0.5}, [{"CPU": 2.0}]) == 4
    assert worker_slots({"CPU": 1 / 3}, [{"CPU": 1.0}]) == 3


def test_the_shortfall_names_the_key_to_change():
    assert shortfall(CPU2, 1, [{"CPU": 2.0}], "resources.workers") is None
    too_big = shortfall({"CPU": 4.0}, 1, [{"CPU": 2.0}, {"CPU": 3.0}], "resources.workers")
    assert "resources.cpus_per_worker asks 4 CPU per worker and the largest node has 3" in too_big
    no_gpu = shortfall({"CPU": 1.0, "GPU": 1.0}, 1, [{"CPU": 8.0}], "resources.workers")
    assert "resources.use_gpu" in no_gpu
    too_many = shortfall(CPU2, 3, [{"CPU": 2.0}, {"CPU": 2.0}], "search.seeds")
    assert too_many.startswith("search.seeds asks 3 workers at once, but the cluster has 4 CPUs (2 nodes) "
                               "and a run needs 6 (3 workers x 2 CPU)")


def test_fractional_gpus_share_a_gpu_and_the_resource_that_allows_fewer_workers_is_named():
    need = worker_resources(ResourcesConfig(use_gpu=True, gpus_per_worker=0.125))
    assert need == {"CPU": 1.0, "GPU": 0.125}
    big = [{"CPU": 16.0, "GPU": 1.0}]
    assert (worker_slots(need, big), runs_at_once(need, 2, big)) == (8, 4)  # 1 GPU, 2 workers x 0.125 a trial
    assert cluster_size(need, 2, big, "a trial") == "the cluster has 1 GPU (1 node) and a trial needs 0.25 (2 workers x 0.125 GPU)"
    small = [{"CPU": 4.0, "GPU": 1.0}]  # the GPU would hold 8 workers, the CPUs 4: CPUs bind
    assert runs_at_once(need, 2, small) == 2
    assert cluster_size(need, 2, small, "a trial") == "the cluster has 4 CPUs (1 node) and a trial needs 2 (2 workers x 1 CPU)"
    assert worker_slots({"CPU": 1.0, "GPU": 1 / 3}, big) == 3
    assert worker_resources(ResourcesConfig(gpus_per_worker=1.0)) == {"CPU": 1.0}  # read only under use_gpu


def test_a_gpu_shortfall_names_use_gpu_where_no_node_has_one_else_gpus_per_worker():
    fraction = {"CPU": 1.0, "GPU": 0.125}
    assert ("resources.use_gpu asks 0.125 GPU per worker and the largest node has 0"
            in shortfall(fraction, 1, [{"CPU": 8.0}], "resources.workers"))
    assert ("resources.gpus_per_worker asks 2 GPU per worker and the largest node has 1"
            in shortfall({"CPU": 1.0, "GPU": 2.0}, 1, [{"CPU": 8.0, "GPU": 1.0}], "resources.workers"))
    apart = shortfall({"CPU": 8.0, "GPU": 1.0}, 1, [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 16.0}], "resources.workers")
    assert apart.endswith("it asks 8 CPU and 1 GPU, and no node has them all")
    too_many = shortfall(fraction, 3, [{"CPU": 2.0, "GPU": 1.0}], "search.seeds")  # CPUs bind, not the GPU
    assert too_many.startswith("search.seeds asks 3 workers at once, but the cluster has 2 CPUs (1 node) "
                               "and a run needs 3 (3 workers x 1 CPU)")
