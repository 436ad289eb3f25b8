"""The faults of the matrix that one or a few `dg launch` runs show, and how each is judged.

Each `FaultCase` names a fault, the PBX it hits, how to arm it on a fresh simulator, and what a
correct pipeline does about it: heal (the day lands equal to a clean run's) or stop with an
error that names the PBX, the endpoint and the partition, quickly and without step retries
when the answer will not change. `run_case` runs one in a workspace of its own, starting from
the earlier day already stored. Kills and the daemon live in `kills.py` and `daemon.py`.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from cdr_assets.simulator import Simulator
from reliability.outcome import HEALED, NAMED_ERROR, Reference, Row, compare_with_clean
from reliability.workspace import (
    RUN_DAY,
    SECRET_VALUES,
    YEASTAR,
    ZORIO,
    PbxSpec,
    Workspace,
    copy_data,
    simulator_config,
    started_simulator,
)

ZORIO_LIST = "/api/pbx/cdr"
YEASTAR_SEARCH = "/openapi/v1.0/cdr/search"
YEASTAR_TOKEN = "/openapi/v1.0/get_token"
#: More than any retry budget: the fault lasts for the whole case.
PERSISTENT = 1000
#: A permanent answer must fail the step within this long (issue: "within a minute").
FAIL_FAST_S = 60.0


def yeastar_error(errcode: int, errmsg: str) -> bytes:
    return json.dumps({"errcode": errcode, "errmsg": errmsg}).encode()


@dataclass
class Armed:
    """What an armed fault changes in the expectation of the clean day."""

    rejected: list[str] = field(default_factory=list)  # cdr_ids that must land in cdr_rejects
    missing: list[str] = field(default_factory=list)  # cdr_ids whose recording must be missing


Arm = Callable[[Simulator, Reference], Armed | None]


@dataclass(frozen=True)
class FaultCase:
    fault: str
    pbx: PbxSpec
    arm: Arm
    expect: str = HEALED
    endpoint: str = ""  # what a named error must name, besides PBX and partition
    simulator: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    launches: int = 1
    permanent: bool = False  # a named error that must come at once: no step retries, < 60 s
    max_token_requests: int | None = None
    says: str = ""  # a regex the error must match (e.g. when to retry)


def _fail(prefix: str, status: int, times: int = 1, **kwargs: Any) -> Arm:
    def arm(sim: Simulator, _: Reference) -> None:
        sim.faults.fail_next(prefix, status, times=times, **kwargs)

    return arm


def _transport(kind: str, prefix: str, times: int = 1, **kwargs: Any) -> Arm:
    def arm(sim: Simulator, _: Reference) -> None:
        getattr(sim.faults, f"{kind}_next")(prefix, times=times, **kwargs)

    return arm


def _retry_after_date(seconds: int) -> Arm:
    """An HTTP-date a few seconds ahead, computed when the fault is armed."""

    def arm(sim: Simulator, _: Reference) -> None:
        sim.faults.fail_next(
            ZORIO_LIST, 429, retry_after=formatdate(time.time() + seconds, usegmt=True)
        )

    return arm


def no_fault(sim: Simulator, _: Reference) -> None:
    return None


def _drift(action: str, where: str) -> Arm:
    def arm(sim: Simulator, _: Reference) -> None:
        sim.faults.drift("zorio", RUN_DAY, at_page=2, action=action, where=where)

    return arm


def _repeat(sim: Simulator, _: Reference) -> None:
    sim.faults.repeat_across_pages("zorio", RUN_DAY, page=2)


def _wrong_typed(sim: Simulator, reference: Reference) -> Armed:
    victim = sorted(reference.rows)[len(reference.rows) // 2]
    sim.faults.override_record("zorio", victim, duration="forty-two")
    return Armed(rejected=[victim])


def _recording_404(sim: Simulator, reference: Reference) -> Armed:
    cdr_id, ref = reference.with_recording()[0]
    sim.faults.missing_recordings.add(ref)
    return Armed(missing=[cdr_id])


def _truncate_recording(sim: Simulator, _: Reference) -> None:
    sim.faults.truncate_next_recordings = 1


HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
ZORIO_422 = json.dumps(
    {
        "message": "The to field must be a date after or equal to from.",
        "errors": {"to": ["The to field must be a date after or equal to from."]},
    }
).encode()

CASES: list[FaultCase] = [
    FaultCase("429, Retry-After: 2 (seconds)", ZORIO, _fail(ZORIO_LIST, 429, retry_after="2")),
    FaultCase("429, Retry-After: HTTP-date 2 s ahead", ZORIO, _retry_after_date(2)),
    FaultCase("429, Retry-After: 0", ZORIO, _fail(ZORIO_LIST, 429, retry_after="0")),
    FaultCase("429, no Retry-After", ZORIO, _fail(ZORIO_LIST, 429)),
    FaultCase(
        "429, Retry-After: 3600 (longer than the 60 s cap), persistent",
        ZORIO,
        _fail(ZORIO_LIST, 429, PERSISTENT, retry_after="3600"),
        NAMED_ERROR,
        endpoint=ZORIO_LIST,
        permanent=True,
        says=r"(?i)retry.*after",
    ),
    FaultCase("500 once", ZORIO, _fail(ZORIO_LIST, 500)),
    FaultCase("502 once", ZORIO, _fail(ZORIO_LIST, 502, body=HTML, content_type="text/html")),
    FaultCase("503 once", YEASTAR, _fail(YEASTAR_SEARCH, 503)),
    FaultCase("504 once", YEASTAR, _fail(YEASTAR_SEARCH, 504)),
    FaultCase(
        "connection reset mid-body (Zorio)", ZORIO, _transport("reset", ZORIO_LIST, after_bytes=200)
    ),
    FaultCase(
        "connection reset mid-body (Yeastar)",
        YEASTAR,
        _transport("reset", YEASTAR_SEARCH, after_bytes=200),
    ),
    FaultCase(
        "response slower than timeout_s (5 s > 3 s)",
        ZORIO,
        _transport("delay", ZORIO_LIST, seconds=5.0),
    ),
    FaultCase("truncated JSON once", ZORIO, _transport("truncate_body", ZORIO_LIST)),
    FaultCase(
        "truncated JSON, persistent",
        ZORIO,
        _transport("truncate_body", ZORIO_LIST, times=PERSISTENT),
        NAMED_ERROR,
        endpoint=ZORIO_LIST,
        permanent=True,
    ),
    FaultCase(
        "HTML page with 200, persistent",
        ZORIO,
        _fail(ZORIO_LIST, 200, PERSISTENT, body=HTML, content_type="text/html"),
        NAMED_ERROR,
        endpoint=ZORIO_LIST,
        permanent=True,
    ),
    FaultCase(
        "Yeastar 10004 TOKEN EXPIRED once",
        YEASTAR,
        _fail(YEASTAR_SEARCH, 200, body=yeastar_error(10004, "TOKEN EXPIRED")),
    ),
    FaultCase(
        "Yeastar 10004 TOKEN EXPIRED, persistent",
        YEASTAR,
        _fail(YEASTAR_SEARCH, 200, PERSISTENT, body=yeastar_error(10004, "TOKEN EXPIRED")),
        NAMED_ERROR,
        endpoint="cdr/search",
        permanent=True,
        max_token_requests=2,
    ),
    FaultCase(
        "Yeastar 40002 PARAMETER ERROR",
        YEASTAR,
        _fail(YEASTAR_SEARCH, 200, PERSISTENT, body=yeastar_error(40002, "PARAMETER ERROR")),
        NAMED_ERROR,
        endpoint="cdr/search",
        permanent=True,
    ),
    FaultCase(
        "Yeastar 60002 on get_token (8 tokens held)",
        YEASTAR,
        _fail(YEASTAR_TOKEN, 200, body=yeastar_error(60002, "MAX LIMITATION EXCEEDED")),
        NAMED_ERROR,
        endpoint="get_token",
        permanent=True,
        max_token_requests=1,
        launches=2,
    ),
    FaultCase(
        "Yeastar 70004 ACCOUNT IP BLOCKED",
        YEASTAR,
        _fail(YEASTAR_TOKEN, 200, PERSISTENT, body=yeastar_error(70004, "ACCOUNT IP BLOCKED")),
        NAMED_ERROR,
        endpoint="get_token",
        permanent=True,
        max_token_requests=1,
        launches=2,
    ),
    FaultCase(
        "Zorio 401 once", ZORIO, _fail(ZORIO_LIST, 401, body=b'{"message":"Unauthenticated."}')
    ),
    FaultCase(
        "Zorio 401, persistent (wrong token), two runs",
        ZORIO,
        no_fault,
        NAMED_ERROR,
        endpoint=ZORIO_LIST,
        env={"REL_ZORIO_TOKEN": "not-the-token"},
        launches=2,
        permanent=True,
    ),
    FaultCase(
        "Zorio 422",
        ZORIO,
        _fail(ZORIO_LIST, 422, PERSISTENT, body=ZORIO_422),
        NAMED_ERROR,
        endpoint=ZORIO_LIST,
        permanent=True,
    ),
    FaultCase(
        "Laravel envelope (all paginator keys, `\\/` escapes)",
        ZORIO,
        no_fault,
        simulator={"zorio": {"envelope": "laravel"}},
    ),
    FaultCase("record inserted ahead of the cursor while paging", ZORIO, _drift("insert", "ahead")),
    FaultCase("record deleted ahead of the cursor while paging", ZORIO, _drift("delete", "ahead")),
    FaultCase("one record on two pages", ZORIO, _repeat),
    FaultCase(
        "wrong-typed record (duration 'forty-two')", ZORIO, _wrong_typed, expect="quarantined"
    ),
    FaultCase("listed recording that 404s", ZORIO, _recording_404, expect="recorded missing"),
    FaultCase("truncated recording once", YEASTAR, _truncate_recording),
    FaultCase(
        "rejected signature (403 Invalid signature.) once",
        ZORIO,
        _fail("/api/public/recordings", 403, body=b'{"message":"Invalid signature."}'),
    ),
    FaultCase(
        "expired download link (403 DOWNLOAD LINK EXPIRED) once",
        YEASTAR,
        _fail("/api/download", 403, body=yeastar_error(-1, "DOWNLOAD LINK EXPIRED")),
    ),
]


@dataclass(frozen=True)
class Start:
    """Where every case begins: the earlier day stored, and the clean run of the day."""

    data_dir: Path
    earlier: dict[str, str]  # file -> sha256 of the earlier day
    reference: Reference
    simulator: dict[str, Any] = field(default_factory=dict)  # the config both runs had


def run_case(case: FaultCase, start: Start, scratch: Path) -> Row:
    """Arm the fault on a fresh simulator, run `dg launch` `case.launches` times, judge it."""
    row = Row(case.fault)
    root = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
    copy_data(start.data_dir, root / "data")
    sim = started_simulator(simulator_config(**case.simulator))
    try:
        workspace = Workspace(root, (case.pbx,), sim.base_url, dict(case.env))
        workspace.write_config()
        armed = case.arm(sim, start.reference) or Armed()
        sim.stats.reset()
        launches = [workspace.launch(case.pbx) for _ in range(case.launches)]
        row.requests = len(sim.stats.requests)
        row.seconds = sum(launch.seconds for launch in launches)
        report = workspace.run_report()
        row.step_retries = report.step_retries
        last = launches[-1]
        judge_launch(row, case, workspace, sim, start, armed, last.returncode, report.failures)
        for launch in launches:
            if launch.killed:
                row.problems.append(f"a launch hung for {launch.seconds:.0f} s")
            for secret in (*SECRET_VALUES, *case.env.values()):
                if secret in launch.output:
                    row.problems.append("a secret reached the output")
        if case.permanent and (
            row.step_retries or max(lc.seconds for lc in launches) > FAIL_FAST_S
        ):
            row.problems.append("a permanent answer was retried or took over a minute")
        if case.max_token_requests is not None:
            tokens = sim.stats.count("get_token")
            row.detail += f" ({tokens} get_token over {case.launches} runs)"
            if tokens > case.max_token_requests:
                row.problems.append(f"{tokens} get_token requests")
    finally:
        sim.stop()
    return row


def judge_launch(
    row: Row,
    case: FaultCase,
    workspace: Workspace,
    sim: Simulator,
    start: Start,
    armed: Armed,
    returncode: int,
    failures: list[str],
) -> None:
    """Fill in outcome, warehouse and earlier-data cells of `row`, and its problems."""
    pbx = case.pbx
    message = failures[-1] if failures else ""
    if armed.rejected:
        judge_quarantine(row, workspace, sim, start, armed, message)
    elif returncode != 0:
        row.outcome = NAMED_ERROR
        row.detail = short_message(message, pbx.name)
        if case.expect != NAMED_ERROR:
            row.problems.append(f"failed: {row.detail or 'no step failure recorded'}")
        else:
            named = [pbx.name, RUN_DAY.isoformat(), case.endpoint]
            if missing := [part for part in named if part not in message]:
                row.problems.append(f"the error does not name {missing}")
            if case.says and not re.search(case.says, message):
                row.problems.append(f"the error does not say /{case.says}/")
        stored = workspace.day_rows(pbx)
        row.warehouse = "— (day not written)" if stored is None else "partial day stored"
        if stored is not None:
            row.problems.append("a failed run left rows of the day")
    else:
        problems = compare_with_clean(workspace, pbx, sim, start.reference, missing=armed.missing)
        row.warehouse = "yes" if not problems else "no: " + "; ".join(problems)
        row.problems.extend(problems)
        row.outcome = HEALED
        if armed.missing:
            row.outcome = "recorded missing"
            row.detail = f"{len(armed.missing)} recording missing in the manifest"
        if case.expect == NAMED_ERROR:
            row.problems.append("succeeded where an error was expected")
    temp = workspace.temp_files()
    if temp:
        row.problems.append(f"temp files where readers look: {temp[:3]}")
    intact = workspace.earlier_fingerprint(pbx) == start.earlier
    row.earlier_intact = "yes" if intact else "no"
    if not intact:
        row.problems.append("the earlier day's files changed")


def judge_quarantine(
    row: Row, workspace: Workspace, sim: Simulator, start: Start, armed: Armed, message: str
) -> None:
    """The bad record in `cdr_rejects`, the day's other CDRs stored, the blocking check failed
    and held the day's recordings back (the step fails on it, as Dagster's blocking checks do)."""
    pbx = next(iter(workspace.pbxs))
    found = workspace.rejected_ids(pbx)
    row.outcome = "quarantined"
    row.detail = (
        f"{len(found)} record in cdr_rejects, the other CDRs stored; blocking check "
        f"{'no_rejected_records failed' if 'no_rejected_records' in message else '?'}"
        ", recordings held back"
    )
    if found != armed.rejected:
        row.problems.append(f"cdr_rejects holds {found}, expected {armed.rejected}")
    if "no_rejected_records" not in message:
        row.problems.append(f"the run did not fail on the blocking check: {message[:200]}")
    problems = compare_with_clean(
        workspace, pbx, sim, start.reference, rejected=armed.rejected, recordings=False
    )
    row.warehouse = (
        "yes (less the rejected record)" if not problems else "no: " + "; ".join(problems)
    )
    row.problems.extend(problems)


def short_message(message: str, pbx: str) -> str:
    """The part of a step failure that a user reads first: from where it names the PBX."""
    found = re.search(rf"PBX '{re.escape(pbx)}'[^|]*", message)
    text = found.group(0).strip() if found else message.strip()
    return text if len(text) <= 200 else text[:197] + "..."
