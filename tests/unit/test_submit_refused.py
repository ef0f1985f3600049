"""A submit the cluster refuses ends in one line and exit 3, never in Ray's traceback.

The cluster is a real HTTP server that answers as Ray's job head does when no dashboard agent
can take the job (the text of ray/dashboard/modules/job/job_head.py), and with a traceback body
as it does for an unexpected error; Ray's own JobSubmissionClient talks to it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from raybake.clusters.address import AddressBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.spec import JobSpec
from raybake.versions import ray_version

NO_AGENT = "No available agent to submit job, please try again later."
TRACEBACK = "Traceback (most recent call last):\n  File \"job_head.py\", line 1\nKeyError: 'x'\n"


def job_head(answer: str):
    class Head(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def reply(self, status: int, body: str, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_GET(self) -> None:
            if self.path == "/api/version":
                self.reply(200, json.dumps({"version": "4", "ray_version": ray_version()}), "application/json")
            else:
                self.reply(200, "[]", "application/json")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.reply(500, answer)

    return Head


@pytest.mark.parametrize(("answer", "shown"), [(NO_AGENT, NO_AGENT), (TRACEBACK, "Traceback")])
def test_a_refused_submit_is_one_line_with_exit_3(answer, shown):
    server = ThreadingHTTPServer(("127.0.0.1", 0), job_head(answer))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        backend = AddressBackend(Settings(backend="address", address=url), url)
        with pytest.raises(RaybakeError) as refused:
            backend.submit(backend.prepare(JobSpec(corpus="s3://bucket/corpus", output="s3://bucket/out", name="j1")))
    finally:
        server.shutdown()
    assert refused.value.code == 3
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"the Ray cluster at {url!r} did not take the job: ")
    assert shown in str(refused.value)
