"""TLS settings from the ``--ssl-*`` options, checked by Rust (rustls) when they are built.

The supervisor builds them once before forking so that a bad certificate, an unreadable key
or a key that does not match is one error at start-up; each worker builds its own, so a
reload (SIGHUP) picks up renewed certificates.
"""

from __future__ import annotations

from . import _juggler
from .config import Config, ConfigError

#: Python's ssl.CERT_NONE, CERT_OPTIONAL and CERT_REQUIRED, as Uvicorn numbers them.
CERT_REQS = (0, 1, 2)


def settings(config: Config) -> _juggler.TlsSettings | None:
    """The worker's ``_juggler.TlsSettings``, or None when TLS is off."""
    if not config.ssl_certfile:
        for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs"):
            if config.values[name]:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} needs --ssl-certfile")
        return None
    key_pem = None
    if config.ssl_keyfile_password:
        key_pem = _decrypt_key(
            config.ssl_keyfile or config.ssl_certfile, config.ssl_keyfile_password
        )
    # rustls' complaints come back as ConfigError, from Rust.
    return _juggler.TlsSettings(
        certfile=config.ssl_certfile,
        keyfile=config.ssl_keyfile,
        key_pem=key_pem,
        ca_certs=config.ssl_ca_certs,
        cert_reqs=config.ssl_cert_reqs,
        ciphers=config.ssl_ciphers,
        http1=config.http != "2",
        http2=config.http not in ("1", "h11", "httptools"),
    )


def _decrypt_key(path: str, password: str) -> bytes:
    """The key in ``path`` decrypted, as PKCS#8 PEM (rustls reads no encrypted keys)."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise ConfigError(
            "--ssl-keyfile-password needs the 'cryptography' package: pip install cryptography"
        ) from None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path!r}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password.encode())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot decrypt the key file {path!r}: {exc}") from None
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
