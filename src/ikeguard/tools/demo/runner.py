"""Orchestration of `ikeguard demo`: build the scenario, run it step by step, always tear everything down.

Each step either succeeds (with evidence kept for the summary) or raises `StepFailed` naming itself; the run
stops at the first failure. Whatever happens (success, failure, Ctrl-C, SIGTERM) the gateways are stopped by
the PIDs we started (SIGTERM, then SIGKILL), then the SIEM, then the namespaces are deleted (which removes
their veths and TUN devices), then the work directory unless `keep_dir`. Gateways run as real `ikeguard run`
processes through `ikeguard.tools.gateway_process.GatewayProcess`; the operator-visible parts (`ikeguard sas`,
`ikeguard initiate`, `ikeguard check`, `ikeguard audit verify`) are the real CLI, run as subprocesses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ikeguard.tools.demo import display
from ikeguard.tools.demo.evidence_step import EvidenceFailed, make_pack
from ikeguard.tools.demo.probes import (
    PING_RE,
    child_packets,
    established,
    installed_child,
    read_jsonl,
    readline_within,
    run_cli,
    sa_evidence,
)
from ikeguard.tools.demo.result import DemoResult, StepFailed, StepRecord
from ikeguard.tools.demo.scenario import (
    CHILD,
    CLAIM_CHILD,
    CONNECTION_MERCHANT,
    CONNECTION_PROCESSOR,
    IKE_PROPOSAL,
    MERCHANT_A,
    MERCHANT_B,
    MERCHANT_C,
    PROCESSOR,
    SIEM_ADDRESS,
    SIEM_PORT,
    GatewayFiles,
    Scenario,
    Site,
    build_scenario,
)
from ikeguard.tools.demo.topology import LAB_PREFIX, DemoNetwork, build_network
from ikeguard.tools.gateway_process import GatewayProcess
from ikeguard.tools.netns import NetnsLab, install_signal_handlers, wait_until

PING_COUNT = 4
TUNNEL_TIMEOUT_S = 20.0
REFUSAL_TIMEOUT_S = 10.0
CLAIM_TIMEOUT_S = 5.0  # `initiate` waits this long for a Child SA that is never installed
SIEM_TIMEOUT_S = 10.0


class Demo:
    """One run of the payment-processor demo."""

    def __init__(self, show: display.Display, *, keep_dir: bool = False, workdir: Path | None = None,
                 evidence_dir: Path | None = None) -> None:
        self.show = show
        self.evidence_dir = evidence_dir
        self._started_utc = dt.datetime.now(dt.UTC)
        self.keep_dir = keep_dir
        self.result = DemoResult()
        self._workdir_given = workdir
        self.workdir: Path | None = None
        self.scenario: Scenario | None = None
        self.lab: NetnsLab | None = None
        self.network: DemoNetwork | None = None
        self.siem_proc: subprocess.Popen[str] | None = None
        self.gateways: dict[str, GatewayProcess] = {}
        self._start_threads: list[threading.Thread] = []
        self._started = time.monotonic()

    # -- plumbing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, key: str, title: str) -> Iterator[list[str]]:
        """Run one step under the progress display; the yielded list collects its one-line result."""
        detail: list[str] = []
        start = time.monotonic()
        try:
            with self.show.running(title):
                yield detail
        except StepFailed as exc:
            self._record(key, title, False, start, exc.message)
            raise
        except KeyboardInterrupt:
            self._record(key, title, False, start, "interrupted")
            raise StepFailed(key, "interrupted (Ctrl-C or SIGTERM)", interrupted=True) from None
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self._record(key, title, False, start, message)
            raise StepFailed(key, message) from exc
        self._record(key, title, True, start, "; ".join(detail))

    def _record(self, key: str, title: str, ok: bool, start: float, detail: str) -> None:
        record = StepRecord(key, title, ok, time.monotonic() - start, detail)
        self.result.steps.append(record)
        self.show.step_done(record.title, ok, record.seconds, detail)

    def gateway(self, site: Site) -> GatewayProcess:
        """The running gateway of a site."""
        return self.gateways[site.name]

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> DemoResult:
        """All steps, then teardown; never raises (the result says what failed)."""
        main_thread = threading.current_thread() is threading.main_thread()
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)} if main_thread else {}
        install_signal_handlers()  # SIGTERM/SIGHUP unwind like Ctrl-C, so teardown below always runs
        try:
            return self._run()
        finally:
            for sig, handler in saved.items():  # leave the caller's process as we found it
                if handler is not None:  # None: set outside Python, cannot be restored from here
                    signal.signal(sig, handler)

    def _run(self) -> DemoResult:
        self.show.intro()
        failures: list[StepFailed] = []
        try:
            self._steps(failures)
        except StepFailed as exc:
            failures.append(exc)
        except KeyboardInterrupt:
            failures.append(
                StepFailed("(between steps)", "interrupted (Ctrl-C or SIGTERM)", interrupted=True)
            )
        finally:
            if failures:
                # An interruption names the step it stopped; otherwise the first step that failed.
                named = next((f for f in failures if f.interrupted), failures[0])
                self.result.failed_step = named.step
                self.result.error = "; ".join(
                    f.message if len(failures) == 1 else f"{f.step}: {f.message}" for f in failures
                )
            elif self.result.error is None:
                self.result.ok = True
            self._teardown()
        self.result.seconds = time.monotonic() - self._started
        self.show.summary(self.result)
        return self.result

    def _steps(self, failures: list[StepFailed]) -> None:
        """The steps in order. pki, network, gateways and tunnels build on each other (a failure stops the
        run); the others are independent evidence: after a failure the rest still run, the exit names it."""
        self._step_pki()
        self._step_network()
        self._independent(self._step_check, failures)
        self._step_gateways()
        self._step_tunnels()
        for step in (self._step_traffic, self._step_segmentation, self._step_revocation, self._step_audit):
            self._independent(step, failures)
        if self.evidence_dir is not None:
            self._independent(self._step_evidence, failures)

    @staticmethod
    def _independent(step: Callable[[], None], failures: list[StepFailed]) -> None:
        try:
            step()
        except StepFailed as exc:
            if exc.interrupted:
                raise
            failures.append(exc)

    # -- steps --------------------------------------------------------------------------------------
    def _step_pki(self) -> None:
        with self.step("pki", "Throwaway CA: ECDSA P-384 device certificates (24 h) and a CRL") as detail:
            if self._workdir_given is not None:
                self.workdir = self._workdir_given
                self.workdir.mkdir(parents=True, exist_ok=True)
            else:
                self.workdir = Path(tempfile.mkdtemp(prefix="ikeguard-demo-"))
            self.result.workdir = str(self.workdir)
            self.scenario = build_scenario(dt.datetime.now(dt.UTC))
            for gw in (*self.scenario.gateways, self.scenario.retired):
                gw.write(self.workdir / gw.name)
            siem_dir = self.workdir / "siem"
            siem_dir.mkdir(exist_ok=True)
            (siem_dir / "server.pem").write_bytes(self.scenario.siem.cert)
            key = siem_dir / "server.key"
            key.touch(mode=0o600)
            key.write_bytes(self.scenario.siem.key)
            (siem_dir / "client-ca.pem").write_bytes(self.scenario.siem.client_ca)
            self.result.evidence["pki"] = {
                "ca": self.scenario.ca_subject,
                "devices": [site.identity for site in (PROCESSOR, MERCHANT_A, MERCHANT_B, MERCHANT_C)],
                "not_after": self.scenario.not_after.isoformat(),
                "crl_revoked_serial": f"{self.scenario.revoked_serial:x}",
            }
            detail.append(
                f"CA {self.scenario.ca_subject}; device certificates (processor, merchants A, B, C) valid "
                f"until {self.scenario.not_after:%Y-%m-%d %H:%M} UTC; the CRL revokes merchant C's cert"
            )

    def _step_network(self) -> None:
        title = "Network namespaces: processor, merchant A, merchant B on one segment, plus the SIEM"
        with self.step("network", title) as detail:
            assert self.workdir is not None and self.scenario is not None
            self.lab = NetnsLab(LAB_PREFIX)
            self.network = build_network(self.lab)
            self.result.namespaces = self.network.names
            siem_dir = self.workdir / "siem"
            argv = [
                sys.executable,
                "-m",
                "ikeguard.tools.demo.siem",
                "--listen",
                f"{SIEM_ADDRESS}:{SIEM_PORT}",
            ]
            argv += ["--cert", str(siem_dir / "server.pem"), "--key", str(siem_dir / "server.key")]
            argv += [
                "--client-ca",
                str(siem_dir / "client-ca.pem"),
                "--out",
                str(siem_dir / "received.jsonl"),
            ]
            with (siem_dir / "siem.log").open("w") as log:  # the child keeps its own copy of the descriptor
                self.siem_proc = self.network.wan.popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
            assert self.siem_proc.stdout is not None
            line = readline_within(self.siem_proc.stdout, 15.0)
            if line.strip() != "listening":
                raise StepFailed("network", f"the demo SIEM did not start: {line!r}")
            detail.append(", ".join(self.network.names))

    def _step_check(self) -> None:
        with self.step("check", "`ikeguard check`: the processor's config against pci-dss-4") as detail:
            assert self.workdir is not None
            config = self.workdir / PROCESSOR.name / "gateway.toml"
            proc = run_cli("check", "-c", str(config), "--json")
            try:
                report = json.loads(proc.stdout)
            except ValueError:
                raise StepFailed("check", f"exit {proc.returncode}: {proc.stderr.strip()}") from None
            summary = display.check_summary(report)
            self.result.evidence["check"] = summary
            self.show.check(config, summary, proc.returncode)
            if proc.returncode != 0:
                problems = ", ".join(
                    f"{r['rule']} ({r['status']})"
                    for r in summary["problems"]
                    if r["status"] in ("fail", "not_implemented")
                )
                raise StepFailed("check", f"`ikeguard check` exited {proc.returncode}: {problems}")
            verdict = report.get("verdict", "?")
            detail.append(f"exit 0, verdict {verdict}: {summary['passed_rules']} rules pass, "
                          f"{summary['warnings']} warnings")

    def _step_gateways(self) -> None:
        with self.step("gateways", "Three gateways: `ikeguard run` in each site's namespace") as detail:
            assert self.workdir is not None and self.scenario is not None and self.network is not None
            for files in self.scenario.gateways:
                self.gateways[files.name] = self._gateway_process(files)
            self.gateway(PROCESSOR).start()
            # The merchants initiate at start (start_action = "start"): bring both up at once.
            errors: list[BaseException] = []
            threads = [
                threading.Thread(target=_start_into, args=(self.gateway(site), errors), daemon=True)
                for site in (MERCHANT_A, MERCHANT_B)
            ]
            self._start_threads = threads
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            detail.append(", ".join(f"{name} pid {gw.pid}" for name, gw in self.gateways.items()))

    def _gateway_process(self, files: GatewayFiles) -> GatewayProcess:
        assert self.workdir is not None and self.network is not None
        ns = self.network.namespace(files.site)
        return GatewayProcess(ns.name, self.workdir / files.name, files.config, files.files, name=files.name)

    def _step_tunnels(self) -> None:
        with self.step("tunnels", "Tunnels up: the processor's SA table (`ikeguard sas`)") as detail:
            processor = self.gateway(PROCESSOR)
            wanted = {MERCHANT_A.identity, MERCHANT_B.identity}

            def both_up(sas: list[dict[str, Any]]) -> bool:
                up = {sa.get("remote_id") for sa in sas if established(sa) and installed_child(sa, CHILD)}
                return wanted <= up

            sas = processor.wait_sas(
                both_up,
                timeout=TUNNEL_TIMEOUT_S,
                what="both merchants' tunnels up",
                conn=CONNECTION_PROCESSOR,
            )
            self.result.evidence["sas"] = [sa_evidence(sa) for sa in sas]
            for sa in sas:
                if sa.get("proposal") != IKE_PROPOSAL:
                    raise StepFailed(
                        "tunnels", f"IKE SA with {sa.get('remote_id')} uses {sa.get('proposal')}"
                    )
            text = run_cli("sas", "--socket", str(processor.control_socket), columns=self.show.inner_width)
            if text.returncode != 0:
                raise StepFailed("tunnels", f"`ikeguard sas` exited {text.returncode}: {text.stderr.strip()}")
            self.show.command_output(f"ikeguard sas --socket {processor.control_socket}", text.stdout)
            for sa in sas:
                child = installed_child(sa, CHILD)
                assert child is not None
                detail.append(f"{sa['remote_id']}: {', '.join(child['remote_ts'])}")

    def _step_traffic(self) -> None:
        with self.step("traffic", "Traffic through the tunnels: ping from each merchant's subnet") as detail:
            assert self.network is not None
            processor = self.gateway(PROCESSOR)
            before = child_packets(processor.sas(conn=CONNECTION_PROCESSOR))
            pings: list[dict[str, Any]] = []
            for site in (MERCHANT_A, MERCHANT_B):
                ns = self.network.namespace(site)
                argv = [
                    "ping",
                    "-n",
                    "-c",
                    str(PING_COUNT),
                    "-i",
                    "0.2",
                    "-W",
                    "3",
                    "-I",
                    str(site.subnet_address),
                    str(PROCESSOR.subnet_address),
                ]
                proc = ns.run(*argv, check=False, timeout=20)
                m = PING_RE.search(proc.stdout)
                sent, received = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
                pings.append(
                    {
                        "site": site.name,
                        "from": str(site.subnet_address),
                        "to": str(PROCESSOR.subnet_address),
                        "sent": sent,
                        "received": received,
                    }
                )
            time.sleep(0.3)  # counters are read from the data plane; let the last replies land
            after = child_packets(processor.sas(conn=CONNECTION_PROCESSOR))
            for ping in pings:
                identity = MERCHANT_A.identity if ping["site"] == MERCHANT_A.name else MERCHANT_B.identity
                ping["processor_packets_in"] = after.get(identity, 0) - before.get(identity, 0)
            self.result.evidence["traffic"] = pings
            self.show.traffic(pings)
            for ping in pings:
                if ping["sent"] == 0 or ping["received"] != ping["sent"]:
                    raise StepFailed("traffic", f"{ping['site']}: {ping['received']}/{ping['sent']} replies")
                if ping["processor_packets_in"] < ping["sent"]:
                    raise StepFailed(
                        "traffic",
                        f"{ping['site']}: the processor's Child SA counted only "
                        f"{ping['processor_packets_in']} packets in",
                    )
                detail.append(f"{ping['site']} {ping['received']}/{ping['sent']}")

    def _step_segmentation(self) -> None:
        title = "Segmentation: merchant B asks for merchant A's subnet"
        with self.step("segmentation", title) as detail:
            processor = self.gateway(PROCESSOR)
            merchant_b = self.gateway(MERCHANT_B)
            # RFC 7296 §2.9: the processor narrows to what the inventory binds to B's identity; A's subnet is
            # outside it, so the CREATE_CHILD_SA is answered with TS_UNACCEPTABLE.
            args = (
                "initiate",
                "--conn",
                CONNECTION_MERCHANT,
                "--child",
                CLAIM_CHILD,
                "--timeout",
                f"{CLAIM_TIMEOUT_S:g}",
            )
            proc = run_cli(*args, "--socket", str(merchant_b.control_socket), columns=self.show.inner_width)
            self.show.command_output(
                f"ikeguard {' '.join(args)}   (on merchant B)", proc.stdout + proc.stderr, proc.returncode
            )
            if proc.returncode == 0:
                raise StepFailed("segmentation", "merchant B's claim of merchant A's subnet was accepted")

            def refused(event: dict[str, Any]) -> bool:
                return event.get("event") == "ts.rejected" and event.get("remote_id") == MERCHANT_B.identity

            def told_unacceptable(event: dict[str, Any]) -> bool:
                return event.get("event") == "child.failed" and "TS_UNACCEPTABLE" in str(event.get("reason"))

            record = processor.wait_audit(
                refused, timeout=REFUSAL_TIMEOUT_S, what="ts.rejected for merchant B"
            )
            answer = merchant_b.wait_audit(
                told_unacceptable, timeout=REFUSAL_TIMEOUT_S, what="child.failed with TS_UNACCEPTABLE"
            )
            self.result.evidence["ts_rejected"] = record
            self.result.evidence["merchant_b_child_failed"] = answer
            self.show.audit_record("processor audit trail: the refusal (ts.rejected)", record)
            self.show.audit_record("merchant B audit trail: the answer it got", answer)
            # No trace of the claim: B holds no Child SA for A's subnet, and its own tunnel stays up.
            b_children = [
                child
                for sa in processor.sas(conn=CONNECTION_PROCESSOR)
                if sa.get("remote_id") == MERCHANT_B.identity and established(sa)
                for child in sa.get("children", [])
            ]
            if any(str(MERCHANT_A.subnet) in child.get("remote_ts", []) for child in b_children):
                raise StepFailed("segmentation", "merchant B holds a Child SA for merchant A's subnet")
            if not any(
                child.get("name") == CHILD and child.get("remote_ts") == [str(MERCHANT_B.subnet)]
                for child in b_children
            ):
                raise StepFailed("segmentation", "merchant B's own tunnel did not survive the refused claim")
            detail.append(
                f"TS_UNACCEPTABLE to merchant B; processor audit seq {record.get('seq')} ts.rejected; "
                "merchant B's own tunnel stays up"
            )

    def _step_revocation(self) -> None:
        title = "Revocation: merchant C's stolen device (certificate on the CRL) tries to connect"
        with self.step("revocation", title) as detail:
            assert self.scenario is not None
            processor = self.gateway(PROCESSOR)
            retired = self._gateway_process(self.scenario.retired)
            self.gateways[MERCHANT_C.name] = retired
            seen = len(processor.audit_events())
            retired.start()  # it initiates at start (start_action = "start")

            def rejected(event: dict[str, Any]) -> bool:
                return (
                    event.get("seq", 0) > seen
                    and event.get("event") in ("cert.rejected", "auth.failure")
                    and MERCHANT_C.identity in json.dumps(event)
                )

            record = processor.wait_audit(rejected, timeout=REFUSAL_TIMEOUT_S, what="merchant C refused")
            retired.stop()
            self.result.evidence["revoked_refused"] = record
            self.show.audit_record(
                f"processor audit trail: merchant C refused ({record.get('event')})", record
            )
            if "revoked" not in json.dumps(record).lower():
                raise StepFailed("revocation", f"merchant C was refused, but not for revocation: {record}")
            if any(sa.get("remote_id") == MERCHANT_C.identity for sa in processor.sas()):
                raise StepFailed("revocation", "merchant C holds an IKE SA")
            detail.append(
                f"IKE_AUTH refused: {record.get('event')}, revoked by the CRL "
                f"(serial {record.get('cert_serial', '?')}); merchant C holds no SA"
            )

    def _step_audit(self) -> None:
        with self.step("audit", "`ikeguard audit verify` on the processor's trail; SIEM delivery") as detail:
            assert self.workdir is not None
            config = self.workdir / PROCESSOR.name / "gateway.toml"
            proc = run_cli("audit", "verify", "-c", str(config), columns=self.show.inner_width)
            self.show.command_output(
                f"ikeguard audit verify -c {config}", proc.stdout + proc.stderr, proc.returncode
            )
            if proc.returncode != 0:
                raise StepFailed("audit", f"`ikeguard audit verify` exited {proc.returncode}")
            received = self.workdir / "siem" / "received.jsonl"

            def siem_has_refusal() -> bool:
                return any(
                    m["client"] == PROCESSOR.identity and m["msgid"] == "ts.rejected"
                    for m in read_jsonl(received)
                )

            if not wait_until(siem_has_refusal, SIEM_TIMEOUT_S, 0.2):
                raise StepFailed("audit", "the SIEM did not receive the processor's ts.rejected record")
            messages = read_jsonl(received)
            per_client: dict[str, int] = {}
            for m in messages:
                per_client[m["client"]] = per_client.get(m["client"], 0) + 1
            self.result.evidence["audit"] = {
                "verify": proc.stdout.strip().splitlines()[-1:] or [""],
                "siem_records": per_client,
            }
            detail.append(
                "verified; SIEM received " + ", ".join(f"{n} from {c}" for c, n in per_client.items())
            )

    def _step_evidence(self) -> None:
        with self.step("evidence", "`ikeguard evidence`: the auditor's pack of this run, verified") as detail:
            assert self.workdir is not None and self.evidence_dir is not None
            config = self.workdir / PROCESSOR.name / "gateway.toml"
            try:
                shown, output = make_pack(config, self.evidence_dir, self._started_utc)
            except EvidenceFailed as exc:
                raise StepFailed("evidence", str(exc)) from exc
            self.show.command_output("ikeguard evidence ...", output, 0)
            self.result.evidence["evidence"] = shown
            detail.append(f"{self.evidence_dir}: {len(shown['files'])} files, suites "
                          + ", ".join(shown["negotiated_suites"]))

    # -- teardown -----------------------------------------------------------------------------------
    def _teardown(self) -> None:
        """Stop gateways (by PID), the SIEM, delete the namespaces and the work dir; never interrupted."""
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        problems: list[str] = []
        try:
            with self.show.running("Removing gateways, namespaces, TUN devices and files"):
                for t in self._start_threads:  # a gateway still starting must not appear after its stop
                    t.join(timeout=30.0)
                # All gateways at once (each sends its DELETEs and waits up to 2 s for the answers).
                stoppers = [
                    threading.Thread(target=_stop_into, args=(gw, problems)) for gw in self.gateways.values()
                ]
                for t in stoppers:
                    t.start()
                for t in stoppers:
                    t.join()
                if self.lab is not None:
                    try:
                        self.lab.close()  # stops the SIEM by PID, deletes namespaces (veths, TUNs with them)
                    except Exception as exc:
                        problems.append(str(exc))
                if self.workdir is not None and not self.keep_dir and self._workdir_given is None:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                self.result.kept = self.workdir is not None and (
                    self.keep_dir or self._workdir_given is not None
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if problems:
            self.show.warning("teardown: " + "; ".join(problems))
            if self.result.ok:
                self.result.ok = False
                self.result.failed_step = "teardown"
                self.result.error = "; ".join(problems)
        self.show.teardown_done(self.result)


def _stop_into(gw: GatewayProcess, problems: list[str]) -> None:
    try:
        gw.stop(timeout=10.0)
    except Exception as exc:
        problems.append(f"{gw.name}: {exc}")


def _start_into(gw: GatewayProcess, errors: list[BaseException]) -> None:
    try:
        gw.start()
    except BaseException as exc:
        errors.append(exc)


def run_demo(
    show: display.Display,
    *,
    keep_dir: bool = False,
    workdir: Path | None = None,
    on_result: Callable[[DemoResult], None] | None = None,
    evidence_dir: Path | None = None,
) -> DemoResult:
    """Run the demo once; returns the result (teardown already done)."""
    result = Demo(show, keep_dir=keep_dir, workdir=workdir, evidence_dir=evidence_dir).run()
    if on_result is not None:
        on_result(result)
    return result


__all__ = ["Demo", "DemoResult", "StepFailed", "StepRecord", "run_demo"]
