"""A real S3 API for the tests: moto's server in a process of its own, with credentials checked.

s3fs talks HTTP to it exactly as to AWS or MinIO. moto accepts any key unless told to check:
INITIAL_NO_AUTH_ACTION_COUNT lets the first requests (making an IAM user, its policy and its
key) through unsigned, and every later request must be signed by that key, so a wrong secret
is refused the way a real store refuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from raycluster import free_port

# create_user, put_user_policy, create_access_key, per user: the requests before auth is enforced.
SETUP_REQUESTS = 3
REGION = "us-east-1"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "corpus" / "articles.jsonl"
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def bucket_policy(bucket: str) -> dict:
    """Everything on one bucket and its keys, nothing on any other."""
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}]}


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str
    # Keys of users that may use one bucket only: bucket -> (access key, secret key).
    narrow: dict[str, tuple[str, str]] = field(default_factory=dict)

    def credentials(self, *, secret: str | None = None, only: str | None = None) -> dict[str, str]:
        """AWS-style variables, as a Kubernetes Secret would hold them; `only`: a user's that may
        use that bucket alone (start(narrow=...))."""
        key, default = self.narrow[only] if only else (self.access_key, self.secret_key)
        return {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret or default,
            "AWS_DEFAULT_REGION": REGION,
        }

    def fs(self):
        """An s3fs client of the test itself, to make buckets and read what jobs wrote."""
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key,
            secret=self.secret_key,
            endpoint_url=self.endpoint,
            skip_instance_cache=True,
        )

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()


def put_mixed_corpus(server: S3Server, folder: str) -> int:
    """The example articles twice under `folder` (bucket/prefix): as JSONL and as Parquet in row
    groups of 16. Returns the number of documents."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = server.fs()
    records = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]
    fs.pipe(f"{folder}/articles.jsonl", EXAMPLE.read_bytes())
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(records), sink, row_group_size=16)
    fs.pipe(f"{folder}/articles.parquet", sink.getvalue().to_pybytes())
    return 2 * len(records)


def start(host: str = "127.0.0.1", timeout: float = 60, *, narrow: tuple[str, ...] = ()) -> S3Server:
    """moto_server on `host` (loopback, or a bridge address the test's own containers reach);
    `narrow`: buckets that each get a user of their own, allowed on that bucket only."""
    import boto3

    port = free_port()
    endpoint = f"http://{host}:{port}"
    log = Path(os.environ.get("TMPDIR", "/tmp"), f"moto-{port}.log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", host, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS * (1 + len(narrow)))},
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            # The dashboard path is moto's own, not S3, so it does not count as a request.
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    keys = {}
    for user, policy in [("raybake", POLICY), *((f"only-{b}", bucket_policy(b)) for b in narrow)]:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    narrowed = {b: keys[f"only-{b}"] for b in narrow}
    return S3Server(process, endpoint, *keys["raybake"], narrow=narrowed)
