"""Files only this user reads: Ray tokens, a job's options and credentials, kubeconfigs, the state.

Each is written whole to a temporary file of mode 0600 from its creation (mkstemp) beside it,
then renamed into place: no other user can read it even briefly, a reader never sees it half
written, and an earlier file of a looser mode is replaced rather than rewritten in place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path`, mode 0600; a folder it makes for the file is this user's alone (0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
