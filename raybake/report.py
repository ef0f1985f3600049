"""What a run produced, as Markdown for a job summary or a pull request comment.

The manifest (read through fsspec, so a bucket URI works where the runner has access) gives the
counts and the throughput; without it the report still says the status and where to look.

A pull request's job writes its own manifest, so every value from it (and every note, which can
quote it) is data: a number is shown as a number, anything else as one inline code span, where
Markdown, HTML, links and @-mentions are inert, and a `|` cannot end a table cell.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import fsspec

from raybake.errors import RaybakeError


# The manifest as its JSON, not job.records.Manifest: a pull request's job, or an older image,
# may write any shape, and every value of it is shown, inert, whatever its type.
def read_manifest(uri: str) -> dict[str, Any]:
    try:
        with fsspec.open(uri, "r") as handle:
            return json.load(handle)
    except (OSError, ValueError, ImportError) as exc:
        raise RaybakeError(f"manifest {uri!r} not readable here: {exc}") from None


def throughput(manifest: dict[str, Any]) -> float | None:
    """Documents per second of wall time, or None where the run recorded no time or processed
    nothing (every shard was done before: a rate would only measure reading the parts)."""
    timings = manifest.get("timings") or {}
    if "processing_seconds" in timings and timings["processing_seconds"] is None:
        return None
    wall = timings.get("wall_seconds")
    documents = (manifest.get("counts") or {}).get("documents")
    return round(documents / wall, 2) if wall and documents is not None else None


# Longer values are cut: a manifest field is a name or a hash, not a page.
SHOWN_CHARS = 200


def inert(value: Any) -> str:
    """`value` as Markdown that shows it and does nothing else: a number, or one code span."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = " ".join(str(value).split())[:SHOWN_CHARS].replace("|", "\\|")
    # A code span's fence is longer than any backtick run inside it; a space pads a span that
    # starts or ends with a backtick (CommonMark strips one space at each end).
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(value: Any) -> str:
    return "" if value is None or value == "" else inert(value)


def job_markdown(
    *,
    job: str,
    status: str,
    manifest: dict[str, Any] | None = None,
    output: str | None = None,
    links: dict[str, str] | None = None,
    note: str | None = None,
) -> str:
    icon = "✅" if status == "SUCCEEDED" else "❌"
    lines = [f"### {icon} raybake job {inert(job)}: {inert(status)}", ""]
    if manifest:
        counts = manifest.get("counts") or {}
        rate = throughput(manifest)
        lines += [
            "| documents | ok | error | missing | truncated | wall s | docs/s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            "| {} | {} | {} | {} | {} | {} | {} |".format(
                *(_cell(counts.get(k)) for k in ("documents", "ok", "error", "missing", "truncated")),
                _cell((manifest.get("timings") or {}).get("wall_seconds")),
                _cell(rate),
            ),
            "",
            f"Model {inert((manifest.get('model') or {}).get('name'))}, image {inert(manifest.get('image'))}, "
            f"git {inert(manifest.get('git_sha'))}.",
            "",
        ]
    if note:
        lines += [f"> {inert(note)}", ""]
    if output:
        lines.append(f"- outputs: {inert(output)}")
    lines += [f"- [{label}]({url})" for label, url in (links or {}).items() if url]
    return "\n".join(lines).rstrip() + "\n"


def image_digest(ref: str) -> str:
    """The registry's digest of a pushed image reference."""
    argv = ["docker", "buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
        return json.loads(done.stdout)["digest"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        raise RaybakeError(f"no digest for {ref!r}: is it pushed and are you logged in? ({exc})") from None


def image_markdown(*, ref: str, digest: str, tags: list[str]) -> str:
    repository = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    lines = [f"### 📦 `{repository}`", "", f"- digest: `{digest}`", f"- pull: `{repository}@{digest}`"]
    lines += [f"- tag: `{repository}:{tag}`" for tag in tags]
    return "\n".join(lines) + "\n"
