"""Two (or more) real Synapse homeservers federating on loopback, for the tests only.

Each server is named ``127.0.0.1:<port>`` (an IP literal with its port: no .well-known or SRV
lookup), serves the federation API with TLS on that port (a self-signed certificate made here)
and the client API over plain HTTP on another. Certificate verification is off and loopback
addresses are allowed for federation: both only make sense on a test machine, never on a real
homeserver (docs/OPERATIONS.md says what a real cooperative needs).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refdesk.homeserver import EmbeddedSynapse, free_port


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def self_signed(directory: Path) -> Certificate:
    """A certificate and key for localhost / 127.0.0.1, made with the ``cryptography`` package
    (a dependency of Synapse)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(directory / "federation.crt", directory / "federation.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass(frozen=True)
class Ports:
    client: int
    federation: int

    @property
    def server_name(self) -> str:
        return f"127.0.0.1:{self.federation}"


def new_ports() -> Ports:
    return Ports(free_port(), free_port())


def federating_synapse(
    data_dir: Path,
    ports: Ports,
    peers: list[Ports],
    certificate: Certificate,
    registration_files: list[Path] | None = None,
) -> EmbeddedSynapse:
    """An :class:`EmbeddedSynapse` that federates with ``peers`` (and nobody else)."""
    extra: dict[str, Any] = {
        "bcrypt_rounds": 4,
        "listeners": [
            {
                "port": ports.client,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "openid"], "compress": False}],
            },
            {
                "port": ports.federation,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "x_forwarded": False,
                "resources": [{"names": ["federation"], "compress": False}],
            },
        ],
        "tls_certificate_path": str(certificate.cert),
        "tls_private_key_path": str(certificate.key),
        # Test only: the certificate is self-signed, and the peers are on loopback (Synapse
        # refuses private addresses for federation by default; an allowlist does not apply to
        # a server named by its IP address, so the federation blocklist is emptied).
        "federation_verify_certificates": False,
        "federation_ip_range_blacklist": [],
        "federation_domain_whitelist": [ports.server_name, *(p.server_name for p in peers)],
        "trusted_key_servers": [],
        # Our user directory and profiles are asked over federation: no rate limit in the way.
        "federation_rr_transactions_per_room_per_second": 1000,
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 1000,
            "sleep_delay": 0,
            "reject_limit": 1000,
            "concurrent": 100,
        },
    }
    return EmbeddedSynapse(
        data_dir=data_dir,
        server_name=ports.server_name,
        port=ports.client,
        registration_files=registration_files or [],
        extra_config=extra,
    )
