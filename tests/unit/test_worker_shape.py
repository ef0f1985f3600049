"""How many CPUs a worker asks Ray for, from the cluster's nodes as `ray.nodes()` gives them."""

from __future__ import annotations

from job.pool import default_cpus_per_worker, gpu_worker_cpus


def node(cpus: float, gpus: float = 0, *, alive: bool = True) -> dict:
    # The fields of ray.nodes() the job reads (Ray 2.x: "Alive" and "Resources").
    resources = {"CPU": cpus, "memory": 8e9, "node:10.0.0.1": 1.0}
    if gpus:
        resources["GPU"] = gpus
    return {"NodeID": "n", "Alive": alive, "Resources": resources}


def test_a_gpu_worker_gets_its_nodes_cpus_per_gpu_on_the_tightest_gpu_node():
    # A CPU-only head, an 8-CPU pod with one GPU (the rayjob default), a 64-CPU node with 8 GPUs.
    nodes = [node(2), node(8, 1), node(64, 8), node(200, 1, alive=False)]
    assert gpu_worker_cpus(nodes) == 8
    assert gpu_worker_cpus([node(16, 1)]) == 16  # the H100 machine: one GPU, 16 cores
    assert gpu_worker_cpus([node(4, 8)]) == 1  # never less than one


def test_a_cpu_worker_takes_one_cpu_however_big_the_node():
    assert default_cpus_per_worker(2) == 1 and default_cpus_per_worker(64) == 1
