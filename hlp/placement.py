"""What a Ray cluster can place: Ray Train workers per node, runs at once, and requirements
that no node meets.

Ray Train places a run's workers together (one placement group) and, when the cluster cannot
hold them, waits, times out and tries again without end (STACK-NOTES; issue 15 saw 36 timeouts
in 12 minutes and no epoch). hlp therefore counts, before it asks, how many workers of a run's
size the nodes hold: a sweep starts no more trials than fit (`hlp.sweep.concurrency`), a Ray of
the job's own that can never hold a run is refused at once, and a worker group that still
cannot start fails after `resources.start_timeout_s` with the keys to change.
"""

from __future__ import annotations

import math

from collections.abc import Callable

import ray

from hlp.cluster import own_ray
from hlp.config import ResourcesConfig

# Ray Train reads its worker-group start timeout only from the environment, and passes the
# driver's value on to its controller.
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


class PlacementError(ValueError):
    """The cluster cannot hold a run's Ray Train workers; the message names the keys to change."""


def worker_resources(res: ResourcesConfig) -> dict[str, float]:
    """One Ray Train worker's request, as hlp passes it to ScalingConfig: under use_gpu,
    resources.gpus_per_worker GPUs (1 by default, as Ray Train gives it; a fraction shares a GPU)."""
    return {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.use_gpu else {})}


def alive_nodes() -> list[dict[str, float]]:
    """Each live node's total resources (what Ray can ever give there, busy or not)."""
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def worker_slots(need: dict[str, float], nodes: list[dict[str, float]]) -> int:
    """How many workers of `need` the nodes hold at once: a worker never spans two nodes."""
    return sum(min(math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0) for node in nodes)


def runs_at_once(need: dict[str, float], workers: int, nodes: list[dict[str, float]]) -> int:
    """Runs of `workers` workers each that the nodes hold side by side (Ray Train packs a run's
    workers, spreading over nodes when one node is too small)."""
    return worker_slots(need, nodes) // max(workers, 1)


def _binding(need: dict[str, float], nodes: list[dict[str, float]]) -> str:
    """The resource that allows the fewest workers, the one a message must name (on a tie, GPU:
    the one that is bought). 16 CPUs and 1 GPU hold 8 workers of 1 CPU x 0.125 GPU, GPU-bound, but
    only 4 of 4 CPUs x 0.125 GPU."""
    asked = [k for k, v in need.items() if v > 0]
    return min(asked, key=lambda k: (worker_slots({k: need[k]}, nodes), k != "GPU"))


def cluster_size(need: dict[str, float], workers: int, nodes: list[dict[str, float]], run: str = "a run") -> str:
    """`the cluster has 2 CPUs (1 node) and a run needs 4 (2 workers x 2 CPU)`, in the resource that binds."""
    kind = _binding(need, nodes)
    have = sum(node.get(kind, 0.0) for node in nodes)
    per_run = workers * need[kind]
    return (f"the cluster has {have:g} {kind}{'s' if have != 1 else ''} ({len(nodes)} node{'s' if len(nodes) != 1 else ''}) and {run} needs "
            f"{per_run:g} ({workers} worker{'s' if workers != 1 else ''} x {need[kind]:g} {kind})")


def shortfall(need: dict[str, float], workers: int, nodes: list[dict[str, float]], workers_key: str) -> str | None:
    """Why the nodes can never hold one run of `workers` workers, naming the key to change;
    None when they can."""
    if not any(worker_slots(need, [node]) for node in nodes):
        kind = _binding(need, nodes)
        if worker_slots({kind: need[kind]}, nodes):  # each resource fits some node, none holds them all
            asked = " and ".join(f"{v:g} {k}" for k, v in need.items() if v > 0)
            return f"no node can hold one Ray Train worker: it asks {asked}, and no node has them all"
        largest = max((node.get(kind, 0.0) for node in nodes), default=0.0)
        # No GPU anywhere: use_gpu is the key to change; GPUs too few on every node: the count asked.
        key = "resources.cpus_per_worker" if kind == "CPU" else (
            "resources.gpus_per_worker" if largest else "resources.use_gpu")
        return (f"no node can hold one Ray Train worker: {key} asks {need[kind]:g} {kind} per worker and the "
                f"largest node has {largest:g}")
    if runs_at_once(need, workers, nodes) == 0:
        return (f"{workers_key} asks {workers} workers at once, but {cluster_size(need, workers, nodes)}; "
                f"the nodes hold {worker_slots(need, nodes)} such workers")
    return None


def check_placeable(res: ResourcesConfig, workers: int, workers_key: str, log: Callable[[str], None]) -> None:
    """Refuse a run that the cluster can never hold, at once, on a Ray of the job's own (it never
    gets more nodes); on a joined cluster, where an autoscaler may add nodes, say so and let the
    run wait up to resources.start_timeout_s."""
    if workers == 0:  # trains in the driver
        return
    why = shortfall(worker_resources(res), workers, alive_nodes(), workers_key)
    if why is None:
        return
    if own_ray():
        raise PlacementError(f"{why} (a Ray of this job's own: it gets no more nodes)")
    log(f"warning: {why}; a run waits up to {res.start_timeout_s:g} s (resources.start_timeout_s) for nodes")


def unplaced(res: ResourcesConfig, workers: int, workers_key: str, who: str = "Ray Train") -> PlacementError:
    """The error of a run whose workers did not start within resources.start_timeout_s; `who`
    placed them (a TorchTrainer, or a sweep trial's placement group)."""
    need, nodes = worker_resources(res), alive_nodes()
    why = shortfall(need, workers, nodes, workers_key) or (
        f"{cluster_size(need, workers, nodes)}, but other work held the resources")
    return PlacementError(f"{who} could not start {workers} worker{'s' if workers != 1 else ''} within "
                          f"{res.start_timeout_s:g} s (resources.start_timeout_s): {why}")
