"""One ikeguard gateway (`ikeguard run`) and one strongSwan charon face to face, built from a few parameters.

Scenario builder of the interop tests of issue 6 items 1 and 2, on top of the side builders of
tests/harness/interop_pair.py (one config-building path for every ikeguard/strongSwan pair): ikeguard runs in
the topology's right namespace (192.0.2.1 / 2001:db8:0:1::1, subnet 198.51.100.0/25 / 2001:db8:0:a::/64),
strongSwan in the left one (192.0.2.2 / 2001:db8:0:1::2, subnet 198.51.100.128/25 / 2001:db8:0:b::/64).
`PairSpec.role` is ikeguard's role in the first IKE_SA_INIT. Authentication is PSK or certificates (ECDSA
P-384 or RSA-3072, leaves on both sides from one CA of the same key type, all made with strongSwan's `pki`).
`Pair` reads both sides' SA tables and checks that they describe the same SAs; strongSwan's own view is the
judge.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeguard.tools.certfactory import IssuedCertificate
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import Topology
from tests.harness.ikeguard_conf import IkgAuthority, IkgLocal, IkgRemote
from tests.harness.interop_pair import CHILD, CONN, address, ikeguard_side, strongswan_side
from tests.harness.interop_pair import PairSpec as SideSpec
from tests.harness.interop_pair import assert_same_sa as assert_same_spis
from tests.harness.pki_tool import PkiTool
from tests.harness.plugin import CLIENT_FQDN, GW_FQDN
from tests.harness.strongswan import ChildSaInfo, IkeSaInfo, StrongSwanPeer
from tests.harness.swanctl_conf import AuthConfig

__all__ = [
    "AUTHS",
    "SUITES",
    "Pair",
    "PairSpec",
    "Suite",
    "start_pair",
]



@dataclass(frozen=True)
class Suite:
    """A configured IKE and ESP proposal and what strongSwan's list-sas shows once they are negotiated."""

    name: str
    ike: str  # swanctl/ikeguard proposal string, as configured on both sides
    esp: str  # ESP proposal with its PFS group
    ike_negotiated: str  # IkeSaInfo.proposal
    esp_negotiated: str  # ChildSaInfo.proposal of the IKE_AUTH child (no KE there, RFC 7296 §1.2)
    esp_rekeyed: str  # ChildSaInfo.proposal after a CREATE_CHILD_SA rekey with PFS (RFC 7296 §1.3.3)


SUITES: dict[str, Suite] = {
    "gcm": Suite("gcm", "aes256gcm16-prfsha384-ecp384", "aes256gcm16-ecp384",
                 "aes256gcm16-prfsha384-ecp384", "aes256gcm16", "aes256gcm16-ecp384"),
    "cbc": Suite("cbc", "aes256-sha384-ecp384", "aes256-sha384-ecp384",
                 "aes256-sha384-prfsha384-ecp384", "aes256-sha384", "aes256-sha384-ecp384"),
    "chacha": Suite("chacha", "chacha20poly1305-prfsha256-x25519", "chacha20poly1305-x25519",
                    "chacha20poly1305-prfsha256-curve25519", "chacha20poly1305",
                    "chacha20poly1305-curve25519"),
}
AUTHS = ("psk", "ecdsa", "rsa")
_PKI_KEYS = {"ecdsa": ("ecdsa", 384), "rsa": ("rsa", 3072)}  # pki --gen --type T --size N


def _same_proposal(ours: str, theirs: str) -> bool:
    """ikeguard and strongSwan name X25519 differently (x25519 / curve25519); otherwise equal strings."""
    return ours.replace("x25519", "curve25519") == theirs.replace("x25519", "curve25519")


@dataclass(frozen=True)
class Credentials:
    """A CA and one leaf per side (FQDN + IP SANs), all of one key type, made with strongSwan's `pki` as an
    operator makes them (tests/harness/pki_tool.py); ikeguard gets its certificate and key files verbatim."""

    ca: x509.Certificate
    gw_cert_pem: bytes
    gw_key_pem: bytes  # as `pki --gen` wrote it (SEC1 / PKCS#1 PEM)
    client: IssuedCertificate  # for the strongSwan harness


def make_credentials(auth: str) -> Credentials | None:
    """None for PSK; else a fresh CA and leaves of the key type (ECDSA P-384 or RSA-3072), no EKU."""
    if auth == "psk":
        return None
    key_type, size = _PKI_KEYS[auth]
    with tempfile.TemporaryDirectory(prefix="ikg-pki-") as tmp:
        tool = PkiTool(Path(tmp), key_type=key_type, key_size=size)
        ca = tool.self_signed_ca("ca", f"C=US, O=ikeguard test, CN=ikeguard interop {auth} CA")
        gw = tool.issue("gw", ca, f"C=US, O=ikeguard test, CN={GW_FQDN}",
                        sans=[GW_FQDN, "192.0.2.1", "2001:db8:0:1::1"])
        client = tool.issue("client", ca, f"C=US, O=ikeguard test, CN={CLIENT_FQDN}",
                            sans=[CLIENT_FQDN, "192.0.2.2", "2001:db8:0:1::2"])
        return Credentials(ca.cert, gw.cert_pem(), gw.key_pem(), client.issued(ca))


@dataclass(frozen=True)
class PairSpec:
    """One scenario: ikeguard's role, auth, suite, address family, data plane and per-side extra settings."""

    role: str  # ikeguard's role: "initiator" | "responder"
    auth: str = "psk"
    suite: Suite = SUITES["gcm"]
    ipv6: bool = False
    dataplane: str = "none"
    ikg_esp: tuple[str, ...] | None = None  # default (suite.esp,)
    ss_esp: tuple[str, ...] | None = None
    ikg_conn: Mapping[str, Any] = field(default_factory=dict)  # extra IkgConnection fields
    ikg_child: Mapping[str, Any] = field(default_factory=dict)
    ss_conn: Mapping[str, Any] = field(default_factory=dict)  # extra ConnectionConfig fields
    ss_child: Mapping[str, Any] = field(default_factory=dict)
    gateway: Mapping[str, Any] = field(default_factory=dict)  # extra [gateway] keys
    ss_charon: Mapping[str, object] = field(default_factory=dict)  # extra strongswan.conf charon.* options

    @property
    def id(self) -> str:
        return f"{self.role}-{self.auth}-{self.suite.name}{'-v6' if self.ipv6 else ''}"


@dataclass
class Pair:
    """A running ikeguard gateway and strongSwan peer plus the addresses of their scenario."""

    spec: PairSpec
    topo: Topology
    gw: GatewayProcess
    peer: StrongSwanPeer

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def ikg_addr(self) -> str:
        return str(self.topo.right.address6 if self.spec.ipv6 else self.topo.right.address)

    @property
    def ss_addr(self) -> str:
        return str(self.topo.left.address6 if self.spec.ipv6 else self.topo.left.address)

    @property
    def ikg_subnet(self) -> str:
        return str(self.topo.right.subnet6 if self.spec.ipv6 else self.topo.right.subnet)

    @property
    def ss_subnet(self) -> str:
        return str(self.topo.left.subnet6 if self.spec.ipv6 else self.topo.left.subnet)

    # -- actions -------------------------------------------------------------------------------------
    def initiate(self, timeout: float = 15.0) -> None:
        """The side whose role is "initiator" starts IKE_SA_INIT + IKE_AUTH with the Child SA."""
        if self.spec.role == "initiator":
            self.gw.request("initiate", conn=CONN, child=CHILD, timeout=timeout)
        else:
            self.peer.initiate(child=CHILD, ike=CONN, timeout=timeout)

    def ping(self, count: int = 2) -> str:
        """Ping from strongSwan's subnet to ikeguard's through the tunnel; returns ping's output."""
        left, right = self.topo.left, self.topo.right
        family = ["-6"] if self.spec.ipv6 else []
        src = left.subnet_address6 if self.spec.ipv6 else left.subnet_address
        dst = right.subnet_address6 if self.spec.ipv6 else right.subnet_address
        result = left.namespace.run("ping", *family, "-n", "-c", str(count), "-i", "0.2", "-W", "2", "-I",
                                    str(src), str(dst), check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    # -- views ---------------------------------------------------------------------------------------
    def settled(
        self,
        timeout: float = 15.0,
        what: str = "one IKE SA and one Child SA on each side",
        until: Callable[[IkeSaInfo, dict[str, Any]], bool] | None = None,
    ) -> tuple[IkeSaInfo, dict[str, Any]]:
        """Wait until each side has exactly one IKE SA (ESTABLISHED) with exactly one Child SA (INSTALLED),
        both describe the same SAs and `until(strongSwan's, ikeguard's)` holds; returns that pair."""
        deadline = time.monotonic() + timeout
        problem = ""
        while True:
            ss_sas = self.peer.list_sas()
            ikg_sas = self.gw.sas()
            problem = _one_each(ss_sas, ikg_sas)
            if not problem and until is not None and not until(ss_sas[0], ikg_sas[0]):
                problem = f"SAs do not yet satisfy: {what}"
            if not problem:
                return ss_sas[0], ikg_sas[0]
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what} not reached in {timeout}s: {problem}\nstrongSwan: {ss_sas}\n"
                                     f"ikeguard: {ikg_sas}\n{self.gw.log_tail(40)}\n"
                                     f"{self.peer.log()[-3000:]}")
            time.sleep(0.1)

    def child_routes(self) -> list[str]:
        """Routes towards strongSwan's subnet in ikeguard's namespace (the userspace plane's TUN routes)."""
        family = ["-6"] if self.spec.ipv6 else []
        out = self.topo.right.namespace.ip(*family, "route", "show", "table", "all").stdout
        return [line for line in out.splitlines() if line.startswith(self.ss_subnet)]


def _one_each(ss_sas: list[IkeSaInfo], ikg_sas: list[dict[str, Any]]) -> str:
    """Empty when both sides show one established IKE SA with one installed Child SA, else what differs."""
    if len(ss_sas) != 1 or len(ikg_sas) != 1:
        return f"IKE SAs: strongSwan {len(ss_sas)}, ikeguard {len(ikg_sas)}"
    ss, ikg = ss_sas[0], ikg_sas[0]
    if ss.state != "ESTABLISHED" or ikg["state"] != "established":
        return f"IKE SA states: strongSwan {ss.state}, ikeguard {ikg['state']}"
    if len(ss.children) != 1 or len(ikg["children"]) != 1:
        return f"Child SAs: strongSwan {len(ss.children)}, ikeguard {len(ikg['children'])}"
    if ss.children[0].state != "INSTALLED" or ikg["children"][0]["state"] != "installed":
        return f"Child SA states: strongSwan {ss.children[0].state}, ikeguard {ikg['children'][0]['state']}"
    if (ikg["spi_i"], ikg["spi_r"]) != (f"{ss.initiator_spi:016x}", f"{ss.responder_spi:016x}"):
        return "IKE SPIs differ"
    ss_child, ikg_child = ss.children[0], ikg["children"][0]
    if (ikg_child["spi_in"], ikg_child["spi_out"]) != (f"{ss_child.spi_out:08x}", f"{ss_child.spi_in:08x}"):
        return "Child SA SPIs differ"
    return ""


def assert_same_sa(ss: IkeSaInfo, ikg: dict[str, Any], suite: Suite, *, pfs: bool = False) -> None:
    """Both sides describe one SA pair with the suite's negotiated proposals; `pfs`: the Child SA came from a
    CREATE_CHILD_SA with KE, so its proposal shows the group (the IKE_AUTH child has none, RFC 7296 §1.2)."""
    esp_proposal = suite.esp_rekeyed if pfs else suite.esp_negotiated
    assert ss.state == "ESTABLISHED" and ikg["state"] == "established"
    assert ss.proposal == suite.ike_negotiated, ss.proposal
    assert ikg["proposal"] == suite.ike, ikg["proposal"]  # ikeguard names it as configured
    assert_same_spis(ss, ikg)
    assert ss.initiator is not ikg["initiator"]
    child: ChildSaInfo = ss.child(CHILD)
    ikg_child = ikg["children"][0]
    assert child.state == "INSTALLED" and ikg_child["state"] == "installed"
    assert child.proposal == esp_proposal, child.proposal
    assert _same_proposal(ikg_child["proposal"], esp_proposal), ikg_child["proposal"]
    assert child.encap  # strongSwan's libipsec: ESP in UDP (RFC 3948)


def spis(ss: IkeSaInfo) -> tuple[int, int, int, int]:
    """(IKE SPI i, IKE SPI r, Child SPI in, Child SPI out) of strongSwan's only SA pair."""
    child = ss.children[0]
    return ss.initiator_spi, ss.responder_spi, child.spi_in, child.spi_out


def start_pair(
    netns_topology: Callable[..., Topology],
    strongswan_peer: Callable[..., StrongSwanPeer],
    ikeguard_gateway: Callable[..., GatewayProcess],
    spec: PairSpec,
) -> Pair:
    """Create the namespaces, start strongSwan then ikeguard with mirrored configs; nothing initiated yet."""
    topo = netns_topology("direct")
    creds = make_credentials(spec.auth)
    left, right = topo.left, topo.right
    v6 = spec.ipv6
    sides = SideSpec(ike_proposals=(spec.suite.ike,), esp_proposals=spec.ikg_esp or (spec.suite.esp,),
                     ss_esp_proposals=spec.ss_esp or (spec.suite.esp,))
    ss_local = ss_remote = None
    ikg_local = ikg_remote = None
    ss_kwargs: dict[str, Any] = {}
    files: dict[str, bytes | str] = {}
    authorities: list[IkgAuthority] = []
    if creds is not None:
        ss_local = AuthConfig("pubkey", CLIENT_FQDN, certs=["client.pem"])
        ss_remote = AuthConfig("pubkey", GW_FQDN, cacerts=["ca.pem"])
        ss_kwargs = {"certs": {"client": creds.client}, "cacerts": {"ca": creds.ca}}
        ikg_local = IkgLocal("pubkey", GW_FQDN, certs=["pki/gw.pem"], key="pki/gw.key")
        ikg_remote = IkgRemote("pubkey", CLIENT_FQDN, cacerts=["test-ca"], revocation="relaxed")
        authorities = [IkgAuthority("test-ca", cacert="pki/ca.pem")]
        files = {"pki/gw.pem": creds.gw_cert_pem, "pki/gw.key": creds.gw_key_pem,
                 "pki/ca.pem": creds.ca.public_bytes(serialization.Encoding.PEM)}
    # charon keeps a rekeyed Child SA's inbound half for delete_rekeyed_delay (5 s) to catch late packets;
    # 1 s keeps the rekey scenarios short without changing what is negotiated.
    peer = strongswan_side(strongswan_peer, left, right, spec=sides, ipv6=v6, child=spec.ss_child,
                           conn=spec.ss_conn, local=ss_local, remote=ss_remote, name="strongswan",
                           charon_options={"delete_rekeyed_delay": 1, **spec.ss_charon}, **ss_kwargs)
    gw = ikeguard_side(ikeguard_gateway, right, left, spec=sides, ipv6=v6, dataplane=spec.dataplane,
                       local_addrs=[address(right, v6)], child=spec.ikg_child, conn=spec.ikg_conn,
                       gateway_keys=spec.gateway, local=ikg_local, remote=ikg_remote, authorities=authorities,
                       files=files, name="gw")
    return Pair(spec, topo, gw, peer)
