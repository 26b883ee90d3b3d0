"""``[acme]``: the gateway's certificate from an ACME CA (RFC 8555, ``pki/acme_client.py``), obtained at first
start and renewed while it runs by the shared machinery of ``cert_renewal.py``."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki.acme_client import AcmeError, AcmeOrder, obtain_certificate
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.model import AcmeSection, ConfigModel
from ikeguard.service.cert_renewal import EnrollmentFailed


def acme_order(config: LoadedConfig, section: AcmeSection) -> AcmeOrder:
    """The order ``[acme]`` describes, paths resolved against the configuration file."""
    host, _, port = section.http01_listen.rpartition(":")
    try:
        listen = (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 - as configured (http-01)
    except ValueError:
        raise AcmeError(f"[acme] http01_listen {section.http01_listen!r}: expected ADDRESS:PORT") from None
    return AcmeOrder(section.directory, config.resolve(section.account_key), tuple(section.identifiers),
                     listen, config.resolve(section.ca_bundle) if section.ca_bundle else None,
                     tuple(section.contact))


class AcmeEnroller:
    """The ``Enroller`` (``cert_renewal.py``) of ``[acme]``."""

    name = "acme"
    label = "ACME"

    def section(self, model: ConfigModel) -> AcmeSection | None:
        return model.acme

    def ca(self, section: AcmeSection) -> str:
        return section.directory

    def identifiers(self, section: AcmeSection) -> Sequence[str]:
        return section.identifiers

    def obtain(self, config: LoadedConfig, section: AcmeSection, key: PrivateKey,
               current: x509.Certificate | None) -> list[x509.Certificate]:
        try:
            return obtain_certificate(acme_order(config, section), key)
        except AcmeError as exc:
            raise EnrollmentFailed(str(exc)) from None


ACME = AcmeEnroller()
