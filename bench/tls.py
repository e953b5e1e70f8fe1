"""A throw-away certificate authority and a server certificate for 127.0.0.1, made with ``openssl``.

The CA is self-signed and lives only under ``bench/.work/tls/`` for one run; clients trust it by file
(curl ``--cacert``, aria2c ``--ca-certificate``, fetchtop through ``SSL_CERT_FILE``, as fetchtop has no
CA option: aiohttp's default context loads OpenSSL's default paths, which that variable replaces).
ECDSA P-256 keys keep the handshakes cheap, so the rows measure the bulk transfer."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class CertificateError(RuntimeError):
    """openssl could not make the certificates."""


@dataclass(frozen=True)
class Certificates:
    """The files nginx and the clients need."""

    ca: Path
    """The CA certificate (PEM) the clients trust."""
    cert: Path
    """The server's certificate (PEM), signed by the CA, for IP 127.0.0.1 and DNS localhost."""
    key: Path
    """The server's private key (PEM)."""


_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_certificates(openssl: str, folder: Path) -> Certificates:
    """Create a fresh CA and a server certificate under ``folder`` (wiped first), valid for two days."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, mode=0o700)
    found = Certificates(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")
    ca_key = folder / "ca.key"
    csr = folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text(_EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        [openssl, "req", "-x509", *ec, "-days", "2", "-subj", "/CN=fetchtop bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", str(ca_key), "-out", str(found.ca)]
    )  # fmt: skip
    _openssl(
        [openssl, "req", "-new", *ec, "-subj", "/CN=127.0.0.1", "-keyout", str(found.key), "-out", str(csr)]
    )
    _openssl(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(found.ca), "-CAkey", str(ca_key),
         "-set_serial", "2", "-days", "2", "-extfile", str(extensions), "-out", str(found.cert)]
    )  # fmt: skip
    return found


def _openssl(argv: list[str]) -> None:
    """Run one openssl command; raise CertificateError with its last line when it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CertificateError(f"{argv[1]} failed: {exc}") from exc
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise CertificateError(f"openssl {argv[1]} failed: {lines[-1] if lines else result.returncode}")
