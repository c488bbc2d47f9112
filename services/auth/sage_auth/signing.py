"""The key pair that signs registry tokens: made once on first start, kept on disk.

`registry.key` (RSA, PEM, mode 0600) signs; `registry.crt` (self-signed) is what the registry is
told to trust (`auth.token.rootcertbundle`). The infrastructure scripts run
`python -m sage_auth.signing ensure DIR` before starting the registry, so both sides agree.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.utils import base64url_encode, to_base64url_uint

KEY_FILE = "registry.key"
CERT_FILE = "registry.crt"
KEY_BITS = 2048
CERT_YEARS = 10


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise processes that start at once and would otherwise each make a key."""
    with os.fdopen(os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600), "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sage-auth registry token signer")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ValueError(f"{path} is not an RSA key of 2048 bits or more")
    return key


def ensure_keypair(directory: str | Path) -> tuple[Path, Path]:
    """(key_path, cert_path) in `directory`, made if missing; a stray certificate is remade."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = d / KEY_FILE, d / CERT_FILE
    with _locked(d):
        if key_path.exists():
            key = _load_key(key_path)
            if key_path.stat().st_mode & 0o077:
                os.chmod(key_path, 0o600)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write(key_path, pem, 0o600)
        matches = False
        if cert_path.exists():
            cert_key = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key()
            matches = (
                isinstance(cert_key, rsa.RSAPublicKey)
                and cert_key.public_numbers() == key.public_key().public_numbers()
            )
        if not matches:
            _write(cert_path, _self_signed(key).public_bytes(serialization.Encoding.PEM), 0o644)
    return key_path, cert_path


class Signer:
    """Signs JWTs RS256 with the registry key; the header carries the certificate (`x5c`)."""

    def __init__(self, key_path: Path, cert_path: Path) -> None:
        self._key = _load_key(key_path)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        numbers = self._key.public_key().public_numbers()
        self._jwk = {
            "e": to_base64url_uint(numbers.e).decode(),
            "kty": "RSA",
            "n": to_base64url_uint(numbers.n).decode(),
        }
        canonical = json.dumps(self._jwk, separators=(",", ":"), sort_keys=True).encode()
        self.kid = base64url_encode(hashlib.sha256(canonical).digest()).decode()  # RFC 7638

    @classmethod
    def from_dir(cls, directory: str | Path) -> Signer:
        return cls(*ensure_keypair(directory))

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self._key, algorithm="RS256", headers={"x5c": self._x5c, "kid": self.kid}
        )

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set, for anyone who checks these tokens."""
        return {
            "keys": [{**self._jwk, "kid": self.kid, "use": "sig", "alg": "RS256", "x5c": self._x5c}]
        }


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "ensure":
        print("usage: python -m sage_auth.signing ensure DIR", file=sys.stderr)
        return 2
    print(*ensure_keypair(argv[1]), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
