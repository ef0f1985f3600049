"""raybake's front door: `invoke --list`. Thin: each task parses its flags, makes one call into
raybake (or benchmarks/, tools/) and says the outcome; tasks/_front.py holds what they share.

`invoke --list` shows a researcher's tasks first (tasks/user.py, with the tests and the
benchmarks, which the README sends a user to), then the collections: `dev.*` for whoever works
on raybake, `ci.*` for what only a workflow calls, and `kind.*` for a local kind cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

# invoke puts a tasks package's own directory on sys.path, not the project's: raybake, tools and
# benchmarks are imported from the project root, as under `python -m pytest` there.
_PROJECT = str(Path(__file__).resolve().parent.parent)
if _PROJECT not in sys.path:
    sys.path.insert(0, _PROJECT)

from invoke import Collection  # noqa: E402

from tasks import ci, dev, kind, user  # noqa: E402

ns = Collection.from_module(user)
for root_task in (dev.test, dev.bench, dev.bench_start):
    ns.add_task(root_task)
ns.add_collection(Collection("dev", dev.lint, dev.lock, dev.docs))
ns.add_collection(Collection.from_module(ci, name="ci"))
ns.add_collection(Collection.from_module(kind, name="kind"))
# The section invoke.yaml fills; the defaults themselves are raybake/config.py's.
ns.configure({"raybake": {}})
