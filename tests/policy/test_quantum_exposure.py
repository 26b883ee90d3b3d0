"""Issue 25: `sa.post-quantum` (pq-hybrid, cnsa-2) marks every IKE SA of the running gateway without an ML-KEM
key exchange and without a PPK as quantum-vulnerable; without the gateway it is "not verified"."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

from ikeguard.policy.loader import load_config
from ikeguard.policy.report import evaluate
from ikeguard.service.compliance import _sa_exposure
from tests.engine.test_ike_intermediate import PLAIN, PQ768, _pq_pair

NOW = dt.datetime.now(dt.UTC)  # only certificate validity depends on it; this config has none loaded


def test_runtime_sas_are_judged_by_their_post_quantum_component(examples_dir: Path) -> None:
    config = load_config(examples_dir / "minimal-pq-hybrid.toml")
    assert evaluate(config, now=NOW).rule_status("sa.post-quantum") == "not_verified"
    hybrid, plain = _pq_pair((PQ768,), (PQ768,)), _pq_pair((PLAIN,), (PLAIN,))
    for net in (hybrid, plain):
        net.initiate()
        net.run()
    pq_facts = _sa_exposure(SimpleNamespace(engine=hybrid.b.manager))
    assert [(f["post_quantum"], f["key_exchanges"]) for f in pq_facts] == [(True, ["ECP_384", "ML_KEM_768"])]
    assert evaluate(config, now=NOW, runtime={"sas": pq_facts}).rule_status("sa.post-quantum") == "pass"
    plain_facts = _sa_exposure(SimpleNamespace(engine=plain.b.manager))
    report = evaluate(config, now=NOW, runtime={"sas": pq_facts + plain_facts})
    assert report.rule_status("sa.post-quantum") == "fail"
    (finding,) = [r for r in report.results if r.rule.id == "sa.post-quantum" and r.status == "fail"]
    assert "quantum-vulnerable" in finding.message and "a.example.net" in str(finding.value)
