"""The container cluster reads s3:// and writes s3://, its credentials from an env file only.

The same job as the ray tier's, on the image's own s3fs: the nodes got AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY when they started (conftest's env file, as a pod gets its Secret), and
the submit carries only the endpoint and the addressing style.
"""

from __future__ import annotations

import dataclasses
import json

import s3server
from conftest import Built

from raybake import identity
from raybake.clusters import backend_for, localcluster
from raybake.clusters.containers import ContainerClusterBackend
from raybake.config import Settings
from raybake.spec import JobSpec, with_id
from raybake.submit import submit


def test_jsonl_and_parquet_from_s3_to_s3_in_the_container_cluster(
    settings: Settings, cluster: localcluster.Cluster, cpu_image: Built, s3: s3server.S3Server, capsys
):
    fs = s3.fs()
    for bucket in ("corpus", "results"):
        fs.mkdir(bucket)
    documents = s3server.put_mixed_corpus(s3, "corpus/mixed")
    chosen = dataclasses.replace(
        settings, backend="address", address=cluster.url, s3_endpoint=s3.endpoint, s3_path_style=True
    )
    backend = backend_for(chosen)
    assert isinstance(backend, ContainerClusterBackend)
    spec = JobSpec(corpus="s3://corpus/mixed", output="", job_args=("--split-bytes", "2048"))
    # This process has no credentials: the client cannot list the corpus, the cluster can.
    parts = identity.of(spec, image=backend.image_identity(), settings=chosen, strict=True)
    assert parts["corpus"] == "unlisted" and parts["image"] == cpu_image.plan.ref
    spec = with_id(spec, name=None, results_dir="s3://results/docker", identity=parts)
    assert submit(backend, spec, follow=True) == 0
    out = capsys.readouterr().out
    assert f"job {spec.name}: SUCCEEDED" in out
    manifest = json.loads(fs.cat(f"{spec.output}/manifest.json"))
    counts = manifest["counts"]
    assert counts["documents"] == counts["ok"] == documents and counts["missing"] == counts["error"] == 0
    assert manifest["image"] == cpu_image.plan.ref
    assert all(w["host"].startswith(f"{settings.cluster_name}-worker-") for w in manifest["workers"])
    assert sum(p["rows"] for p in manifest["parts"]) == documents
    assert len(fs.find(f"{spec.output}/parts")) == len(manifest["parts"])
    # The credentials stayed in the nodes' environment: not in the submission, not in the output.
    info = backend.client.get_job_info(spec.name)
    assert s3.secret_key not in json.dumps(info.runtime_env) + json.dumps(info.metadata) + json.dumps(manifest)
