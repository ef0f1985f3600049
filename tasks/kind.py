"""`kind.*`: a local kind cluster with the pinned KubeRay operator, for --backend rayjob without
a real cluster (the e2e tests, a developer's laptop)."""

from __future__ import annotations

from typing import Any

from invoke import Context

from tasks._front import IMAGE, Flag, renamed, say, settings, task

NAME = Flag("name", "kind cluster name (default: raybake.kind_cluster)", "kind_cluster")


@task(
    renamed((IMAGE,), image="local image to load into the kind node (default: the last `invoke build --variant cpu`)"),
    (NAME,),
)
def up(c: Context, **overrides: Any) -> None:
    """A local kind cluster with the pinned KubeRay operator and the image, ready for --backend rayjob."""
    from raybake.image.pushed import local_image
    from raybake.kube import kind

    given = settings(c, **overrides)
    kind.up(given.kind_cluster, image=given.image or local_image(given, "cpu"))


@task((NAME,))
def down(c: Context, **overrides: Any) -> None:
    """Delete the kind cluster `invoke kind.up` made."""
    from raybake.kube import kind

    cluster = settings(c, **overrides).kind_cluster
    say(f"kind cluster {cluster!r} " + ("deleted" if kind.down(cluster) else "did not exist"))
