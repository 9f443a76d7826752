"""A private certificate authority and a server certificate it signs, made with the openssl CLI for one test.

    certs = make_certificates(tmp_path)           # certs.ca, certs.cert, certs.key (PEM files)
    certs.server_context()                        # an ssl.SSLContext for a server on 127.0.0.1 / localhost

The CA and the server certificate carry the extensions strict verification wants (basicConstraints, keyUsage,
key identifiers, subjectAltName IP:127.0.0.1 and DNS:localhost), so a client that verifies the chain and the
host name (ssl.create_default_context(cafile=certs.ca), Python 3.13's VERIFY_X509_STRICT included) accepts it.
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: str
    cert: str
    key: str

    def server_context(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder, name="test-server") -> Certificates:
    folder = Path(folder) / ("tls-" + name)
    folder.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=songmetrix test CA %s" % name, "-keyout", "ca.key", "-out", "ca.pem",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=folder)
    (folder / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=folder)
    return Certificates(ca=str(folder / "ca.pem"), cert=str(folder / "server.pem"), key=str(folder / "server.key"))
