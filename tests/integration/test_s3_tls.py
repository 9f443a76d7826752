"""S3 over HTTPS: certificates are checked by default; ca_bundle and validate_certs change that.

A small TLS terminator (self-signed certificate for 127.0.0.1) forwards raw bytes to the moto
endpoint, so the module talks real TLS to a real S3 server.
"""

import socket
import ssl
import subprocess
import threading

import pytest

from tests.servers import LOCALHOST


class TlsForwarder:
    def __init__(self, upstream_port, cert, key):
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server((LOCALHOST, 0))
        self.port = self.listener.getsockname()[1]
        self.endpoint_url = "https://%s:%d" % (LOCALHOST, self.port)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()  # the client refused our certificate
            return
        upstream = socket.create_connection((LOCALHOST, self.upstream_port))
        threading.Thread(target=self._pump, args=(upstream, secure), daemon=True).start()
        self._pump(secure, upstream)

    @staticmethod
    def _pump(source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


@pytest.fixture
def tls_endpoint(tmp_path, s3_server):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=s3-test",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    forwarder = TlsForwarder(s3_server.port, cert, key)
    yield forwarder, cert
    forwarder.close()


def test_certificates_are_checked_unless_told_otherwise(run_module, tls_endpoint, s3_bucket, s3_storage_params):
    forwarder, cert = tls_endpoint
    storage = s3_storage_params(s3_bucket, endpoint_url=forwarder.endpoint_url, retries=0)
    res = run_module("backup_info", dict(storage=storage))
    assert res.failed and "TLS" in res.msg and "ca_bundle" in res.msg, res.describe()

    res = run_module("backup_info", dict(storage=dict(storage, ca_bundle=cert)))
    assert res.rc == 0 and res.result["count"] == 0, res.describe()

    res = run_module("backup_info", dict(storage=dict(storage, validate_certs=False)))
    assert res.rc == 0, res.describe()
