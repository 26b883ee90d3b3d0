"""``[scep]``: the gateway's certificate from a SCEP CA (RFC 8894, ``pki/scep_client.py``), obtained at first
start and renewed while it runs by the shared machinery of ``cert_renewal.py``. A renewal is a RenewalReq
signed with the current certificate when the CA offers ``Renewal`` (RFC 8894 §3.3.1.2)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from ikeguard.crypto.pkcs11_key import TokenError, read_pin
from ikeguard.crypto.signatures import PrivateKey
from ikeguard.pki.scep_client import ScepError, ScepRequest, obtain_certificate
from ikeguard.policy.loader import LoadedConfig
from ikeguard.policy.model import ConfigModel, ScepSection
from ikeguard.service.cert_renewal import EnrollmentFailed


def scep_request(config: LoadedConfig, section: ScepSection) -> ScepRequest:
    """The request ``[scep]`` describes, the challenge password read from its source (file or env)."""
    try:
        challenge = read_pin(section.challenge, base=config.base_dir)
    except TokenError as exc:
        raise EnrollmentFailed(str(exc).replace("PKCS#11 PIN", "[scep] challenge")) from None
    return ScepRequest(section.url, bytes.fromhex(section.ca_fingerprint), tuple(section.identifiers),
                       section.common_name or section.identifiers[0], challenge)


class ScepEnroller:
    """The ``Enroller`` (``cert_renewal.py``) of ``[scep]``."""

    name = "scep"
    label = "SCEP"

    def section(self, model: ConfigModel) -> ScepSection | None:
        return model.scep

    def ca(self, section: ScepSection) -> str:
        return section.url

    def identifiers(self, section: ScepSection) -> Sequence[str]:
        return section.identifiers

    def obtain(self, config: LoadedConfig, section: ScepSection, key: PrivateKey,
               current: x509.Certificate | None) -> list[x509.Certificate]:
        try:
            return obtain_certificate(scep_request(config, section), key, current)
        except ScepError as exc:
            raise EnrollmentFailed(str(exc)) from None


SCEP = ScepEnroller()
