"""The registry signing key pair: made once, private, reused, consistent with its certificate."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sage_auth.signing import Signer, ensure_keypair


def test_ensure_keypair_makes_a_private_key_and_its_certificate(tmp_path):
    key_path, cert_path = ensure_keypair(tmp_path / "keys")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.issuer == cert.subject  # self-signed: it is its own root


def test_ensure_keypair_is_idempotent(tmp_path):
    first = [p.read_bytes() for p in ensure_keypair(tmp_path)]
    second = [p.read_bytes() for p in ensure_keypair(tmp_path)]
    assert first == second


def test_a_certificate_of_another_key_is_remade_and_the_key_kept(tmp_path):
    key_path, cert_path = ensure_keypair(tmp_path / "a")
    _, other_cert = ensure_keypair(tmp_path / "b")
    cert_path.write_bytes(other_cert.read_bytes())
    key_before = key_path.read_bytes()
    ensure_keypair(tmp_path / "a")
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert key_path.read_bytes() == key_before
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_a_too_open_key_file_is_made_private(tmp_path):
    key_path, _ = ensure_keypair(tmp_path)
    key_path.chmod(0o644)
    ensure_keypair(tmp_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_concurrent_starts_agree_on_one_key(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ensure_keypair(tmp_path)[0].read_bytes(), range(4)))
    assert len(set(results)) == 1


def test_command_line_ensure_prints_both_paths(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sage_auth.signing", "ensure", str(tmp_path / "k")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out == [str(tmp_path / "k" / "registry.key"), str(tmp_path / "k" / "registry.crt")]
    bad = subprocess.run([sys.executable, "-m", "sage_auth.signing"], capture_output=True)
    assert bad.returncode == 2


def test_signed_token_carries_the_certificate_and_verifies(tmp_path):
    signer = Signer.from_dir(tmp_path)
    token = signer.sign({"sub": "x", "aud": "a"})
    header = jwt.get_unverified_header(token)
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    claims = jwt.decode(token, cert.public_key(), algorithms=["RS256"], audience="a")
    assert claims["sub"] == "x"
    jwk = jwt.PyJWKSet.from_dict(signer.jwks())[header["kid"]]
    assert jwt.decode(token, jwk, algorithms=["RS256"], audience="a")["sub"] == "x"
