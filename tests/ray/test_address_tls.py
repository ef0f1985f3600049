"""TLS in front of a real Ray head (as an OpenShift route or ingress puts it): verify, CA bundle, skip.

A self-signed certificate made with openssl, a TLS-terminating relay to the session's head; the
Ray job API behind it and the TLS verification in front are real.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from raybake.clusters.address import AddressBackend
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.kube.portforward import pump
from raybake.versions import ray_version

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
TOKEN_ENV = "RAYBAKE_TEST_RAY_TOKEN"


@pytest.fixture
def tls_url(ray_head, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, ray_head.token or "")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run(
        ["openssl", *request, "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=relay, args=(raw,), daemon=True).start()

    def relay(raw):
        try:
            secure = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that refused our certificate
            return
        head = socket.create_connection(("127.0.0.1", ray_head.dashboard_port))
        threading.Thread(target=pump, args=(head, secure), daemon=True).start()
        pump(secure, head)

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", str(cert)
    listener.close()


def test_an_unknown_certificate_is_refused_with_what_to_do(tls_url):
    url, _ = tls_url
    with pytest.raises(RaybakeError, match="TLS verification of .* failed.*--ca-bundle"):
        AddressBackend(Settings(token_env=TOKEN_ENV), url).ray_version()


def test_the_ca_bundle_verifies_it(tls_url):
    url, cert = tls_url
    chosen = AddressBackend(Settings(token_env=TOKEN_ENV, ca_bundle=cert), url)
    assert chosen.ray_version() == ray_version()
    assert isinstance(chosen.jobs(), list)  # Ray's own client verifies with the same bundle


def test_verification_can_be_skipped(tls_url):
    url, _ = tls_url
    assert AddressBackend(Settings(token_env=TOKEN_ENV, verify_tls=False), url).ray_version() == ray_version()
