"""Object storage settings in a RayJob and the runtime env; what makes two submits one job."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jsonschema
import pytest
import yaml
from crd import crd_schema
from fakekube import FakeKube

from raybake import config, identity, objectstore
from raybake.clusters.address import AddressBackend
from raybake.clusters.rayjob import RayJobBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube.manifests import to_yaml
from raybake.spec import JobSpec, with_id
from raybake.submit import submit
from raybake.versions import ROOT

SHAPES = yaml.safe_load((ROOT / "tests" / "unit" / "shapes" / "rayjobs.yaml").read_text())
IMAGE = "registry.example/raybake@sha256:" + "c" * 64


def dry_run(*flags: str) -> subprocess.CompletedProcess:
    """`invoke submit --backend rayjob --dry-run` as a user runs it, with no credentials anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INVOKE_RAYBAKE_"))}
    argv = [sys.executable, "-m", "invoke", "submit", "--backend", "rayjob", "--image", IMAGE, "--dry-run", *flags]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_dry_run_with_a_secret_and_an_endpoint_validates_and_shows_both_in_every_container():
    done = dry_run(
        "--corpus",
        "s3://bucket/corpus",
        "--output",
        "s3://bucket/results",
        "--env-from-secret",
        "s3-creds",
        "--s3-endpoint",
        "https://s3.example.internal",
    )
    assert done.returncode == 0, done.stderr
    (manifest,) = [d for d in yaml.safe_load_all(done.stdout) if d and d.get("kind") == "RayJob"]
    jsonschema.Draft7Validator(crd_schema("rayjobs")).validate(manifest)
    cluster = manifest["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    containers = [c for p in pods for c in p["template"]["spec"]["containers"]]
    assert [c["name"] for c in containers] == ["ray-head", "ray-worker"]
    for container in containers:
        assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
        assert {"name": "AWS_ENDPOINT_URL_S3", "value": "https://s3.example.internal"} in container["env"]
    # No credentials here: the note says the id covers the corpus path, and goes to stderr.
    assert "cannot list --corpus from here" in done.stderr


@pytest.mark.parametrize("source", ["configmap:odf-ca/service-ca.crt", "secret:store-ca/ca.pem"])
def test_a_ca_bundle_from_a_configmap_or_secret_is_mounted_read_only_and_named_by_aws_ca_bundle(source):
    settings = Settings(backend="rayjob", image=IMAGE, s3_ca_bundle=source, s3_path_style=True)
    spec = JobSpec(corpus="s3://b/c", output="s3://b/o", name="raybake-embed-ca")
    backend = RayJobBackend(settings)
    manifest = backend.manifest(backend.prepare(spec))
    jsonschema.Draft7Validator(crd_schema("rayjobs")).validate(manifest)
    key = source.rsplit("/", 1)[1]
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in head["containers"][0]["env"]}
    assert env["AWS_CA_BUNDLE"] == f"{objectstore.CA_MOUNT}/{key}"
    assert json.loads(env["FSSPEC_S3"]) == {"config_kwargs": {"s3": {"addressing_style": "path"}}}
    assert head["containers"][0]["volumeMounts"][-1] == {
        "name": "s3-ca",
        "mountPath": "/etc/raybake/s3-ca",
        "readOnly": True,
    }
    (volume,) = [v for v in head["volumes"] if v["name"] == "s3-ca"]
    assert volume.get("configMap", volume.get("secret"))["items"] == [{"key": key, "path": key}]
    # The dry-run names the ConfigMap or Secret: a name, not a secret.
    assert f"Name: {source.split(':')[1].split('/')[0]}\n" in to_yaml(manifest).replace("name: ", "Name: ")


def test_without_object_store_settings_the_rayjob_is_unchanged():
    spec = JobSpec(corpus="s3://b/c", output="s3://b/o", name="raybake-embed-plain")
    backend = RayJobBackend(Settings(backend="rayjob", image=IMAGE))
    manifest = backend.manifest(backend.prepare(spec))
    assert "envFrom" not in manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("env_from_secret", ("S3_Creds",), "not a Kubernetes Secret name"),
        ("s3_endpoint", "s3.example.internal", "must be an http"),
        ("s3_endpoint", "https://key:secret@s3.example.internal", "must not carry credentials"),
        ("s3_ca_bundle", "configmap:odf-ca", "configmap:NAME/KEY"),
        ("s3_ca_bundle", "ca.pem", "absolute path"),
    ],
)
def test_bad_object_store_settings_are_refused_with_the_value(field, value, refusal):
    with pytest.raises(RaybakeError, match=refusal) as caught:
        objectstore.pod_additions(dataclasses.replace(Settings(), **{field: value}))
    assert caught.value.code == 2
    assert "secret@" not in str(caught.value)


def test_other_backends_get_the_endpoint_variables_in_the_runtime_env_and_no_credentials():
    settings = Settings(backend="address", s3_endpoint="http://127.0.0.1:9000/", s3_ca_bundle="/etc/ssl/store.pem")
    backend = AddressBackend(settings, "http://127.0.0.1:8265")
    env = backend.runtime_env(backend.prepare(JobSpec(corpus="s3://b/c", output="s3://b/o")))
    assert env["env_vars"]["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9000"
    assert env["env_vars"]["AWS_CA_BUNDLE"] == "/etc/ssl/store.pem"
    assert not any(k.startswith(("AWS_ACCESS", "AWS_SECRET")) for k in env["env_vars"])


def test_env_from_secret_is_a_setting_too():
    assert config.load({"env_from_secret": "a, b"}).env_from_secret == ("a", "b")
    assert config.load({"env_from_secret": ["a"]}, env_from_secret=("c",)).env_from_secret == ("c",)


def job_id(spec: JobSpec, **parts: str) -> str:
    return with_id(spec, name=None, results_dir="results", identity=parts).name


def test_every_part_of_the_identity_changes_the_job_id_and_nothing_else_does(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "one"}\n')
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "my_job.py").write_text("print('v1')\n")
    (tmp_path / "work" / "results").mkdir()  # excluded from uploads, so from the hash too
    spec = JobSpec(corpus=str(tmp_path / "corpus"), output="", entrypoint="python my_job.py")

    def parts(image: str = IMAGE) -> dict[str, str]:
        return identity.of(spec, image=image, settings=Settings(), strict=True, cwd=tmp_path / "work")

    first = job_id(spec, **parts())
    (tmp_path / "work" / "results" / "old.txt").write_text("earlier output")
    assert job_id(spec, **parts()) == first
    (tmp_path / "work" / "my_job.py").write_text("print('v2')\n")
    assert identity.changed(parts(), parts()) == ["options"]
    script = job_id(spec, **parts())
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    corpus = job_id(spec, **parts())
    image = job_id(spec, **parts(image=IMAGE.replace("c", "d")))
    assert len({first, script, corpus, image}) == 4
    # What the user typed is the same: one lineage, so the next submit can say what changed.
    assert len({with_id(spec, name=None, results_dir="results", identity=parts(i)).lineage for i in "ab"}) == 1


def test_a_rebuilt_image_gives_a_new_rayjob_and_says_why_while_the_same_image_attaches(capsys):
    kube = FakeKube(statuses=[SHAPES["succeeded"]])

    def submit_with(image: str) -> str:
        settings = Settings(backend="rayjob", image=image, remote_output="s3://bucket/results")
        chosen = RayJobBackend(settings, kube=kube)
        spec = JobSpec(corpus="cluster:/mnt/data/corpus", output="")
        parts = identity.of(spec, image=chosen.image_identity(), settings=settings, strict=False)
        assert submit(chosen, with_id(spec, name=None, results_dir="s3://bucket/results", identity=parts)) == 0
        return capsys.readouterr().out

    submit_with(IMAGE)
    (first,) = [m["metadata"]["name"] for m in kube.created]
    assert f"attaching to {first} (SUCCEEDED)" in submit_with(IMAGE)
    assert len(kube.created) == 1
    out = submit_with(IMAGE.replace("c", "e"))
    second = kube.created[-1]["metadata"]["name"]
    assert (
        second != first
        and kube.created[-1]["metadata"]["annotations"]["raybake.io/output"] == f"s3://bucket/results/{second}"
    )
    assert f"image changed since {first} ran: a new job {second}" in out
    assert f"ran anew: image changed since {first} ran" in out


def test_a_presigned_https_corpus_is_identified_by_its_etag_and_its_signature_is_never_shown(capsys):
    """Like a presigned S3 GET URL: HEAD is refused (the signature covers the method), GET answers."""
    import http.server
    import threading

    body = b'{"text": "one"}\n'

    class Presigned(http.server.BaseHTTPRequestHandler):
        etag = '"v1"'
        allowed = True

        def do_HEAD(self):
            self.send_response(403)
            self.end_headers()

        def do_GET(self):
            self.send_response(200 if Presigned.allowed else 403)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", Presigned.etag)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Presigned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/corpus.jsonl?X-Amz-Signature=planted-signature-XYZ"
        first = identity.corpus_identity(url, settings=Settings(), strict=True)
        assert first not in ("unlisted", "absent")
        assert identity.corpus_identity(url, settings=Settings(), strict=True) == first
        Presigned.etag = '"v2"'
        assert identity.corpus_identity(url, settings=Settings(), strict=True) != first
        Presigned.allowed = False  # expired: the job will say so; the id still forms
        assert identity.corpus_identity(url, settings=Settings(), strict=True) in ("unlisted", "absent")
    finally:
        server.shutdown()
    captured = capsys.readouterr()
    assert "planted-signature" not in captured.out + captured.err


def test_the_client_credentials_are_those_of_the_stores_the_uris_name_and_no_more():
    environ = {
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ENDPOINT_URL_S3": "http://env:9000",
        "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
        "AZURE_STORAGE_ACCOUNT_KEY": "z",
        "AZURE_CLIENT_SECRET": "not-adlfs",
        "HF_TOKEN": "hf",
        "AWS_EMPTY": "",
    }
    settings = Settings()
    assert objectstore.credentials(["s3://b/c", "/tmp/out"], environ, settings=settings) == {
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ENDPOINT_URL_S3": "http://env:9000",
    }
    assert objectstore.credentials(["gs://b/c", "az://b/o"], environ, settings=settings) == {
        "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
        "AZURE_STORAGE_ACCOUNT_KEY": "z",
    }
    assert objectstore.credentials(["https://h/c.jsonl", "/tmp/o"], environ, settings=settings) == {}
    # Where the settings say the store is, theirs stays: the endpoint is not the environment's.
    given = Settings(s3_endpoint="http://setting:9000")
    assert "AWS_ENDPOINT_URL_S3" not in objectstore.credentials(["s3://b/c"], environ, settings=given)
