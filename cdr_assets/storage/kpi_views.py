"""The analyst views: telephony KPIs as SQL over the `cdr`, `recordings` and `pbxs` views.

This module owns the text of `cdr_daily_kpis`, `cdr_by_extension`, `cdr_by_queue`,
`cdr_by_trunk` and `cdr_hourly` (`cdr_hourly` joins the `pbxs` view, which `storage.duckdb`
builds over the `pbxs` table, for each PBX's zone). They read the other views by name, never
files, so they are as current as `cdr` is: a new partition shows up in every KPI at the next
query. `storage.duckdb.ensure_views` creates them with the table views, under the same rule
(written only when their text changes).

Definitions (the README's column tables state the same):
- calls: CDR rows (every attempt, whatever its outcome).
- answered: calls with disposition 'answered' (voicemail is not answered by a person).
- offered: calls the network delivered to a ringing destination, i.e. not 'busy' or 'failed'.
- ASR (answer-seizure ratio) = answered / calls: the carrier's view, every attempt counts.
- answer_rate = answered / offered: the contact centre's view, only calls that could have been
  answered count.
- ACD (average call duration) = talk seconds of answered calls / answered calls; NULL, not an
  error, when nothing was answered. Every ratio is NULL when its denominator is 0.

It must not open connections, know files, or know vendors.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

ANSWERED = "disposition = 'answered'"
OFFERED = "disposition NOT IN ('busy', 'failed')"

# Aggregates shared by the views (over `cdr`, any grouping), then the ratios over them.
_COUNTS = f"""count(*) AS calls,
    count(*) FILTER (WHERE {ANSWERED}) AS answered,
    count(*) FILTER (WHERE {OFFERED}) AS offered,
    CAST(sum(talk_s) FILTER (WHERE {ANSWERED}) AS BIGINT) AS answered_talk_s,
    avg(ring_s) AS avg_ring_s,
    CAST(coalesce(sum(talk_s), 0) AS BIGINT) AS talk_s"""
_RATIOS = """calls, answered, offered,
  CAST(answered AS DOUBLE) / NULLIF(offered, 0) AS answer_rate,
  CAST(answered AS DOUBLE) / NULLIF(calls, 0) AS asr,
  CAST(answered_talk_s AS DOUBLE) / NULLIF(answered, 0) AS acd_s,
  avg_ring_s,
  talk_s / 60.0 AS talk_minutes"""

CDR_DAILY_KPIS = f"""SELECT pbx, call_date, direction, {_RATIOS},
  recordings_archived, recordings_missing, recordings_failed
FROM (
  SELECT c.pbx, c.call_date, c.direction, {_COUNTS},
    count(*) FILTER (WHERE r.status = 'archived') AS recordings_archived,
    count(*) FILTER (WHERE r.status = 'missing') AS recordings_missing,
    count(*) FILTER (WHERE r.status = 'failed') AS recordings_failed
  FROM cdr AS c
  LEFT JOIN recordings AS r
    ON r.pbx = c.pbx AND r.call_date = c.call_date AND r.cdr_id = c.cdr_id
  GROUP BY c.pbx, c.call_date, c.direction
)"""

CDR_BY_EXTENSION = f"""SELECT pbx, call_date, extension, inbound, outbound, internal, {_RATIOS}
FROM (
  SELECT pbx, call_date, coalesce(agent_extension, extension) AS extension,
    count(*) FILTER (WHERE direction = 'inbound') AS inbound,
    count(*) FILTER (WHERE direction = 'outbound') AS outbound,
    count(*) FILTER (WHERE direction = 'internal') AS internal,
    {_COUNTS}
  FROM cdr
  GROUP BY pbx, call_date, coalesce(agent_extension, extension)
)"""

CDR_BY_QUEUE = f"""SELECT pbx, call_date, queue_name, {_RATIOS},
  calls - answered AS unanswered, avg_queue_wait_s, max_queue_wait_s, asa_s, agents
FROM (
  SELECT pbx, call_date, queue_name, {_COUNTS},
    avg(queue_wait_s) AS avg_queue_wait_s,
    max(queue_wait_s) AS max_queue_wait_s,
    avg(queue_wait_s) FILTER (WHERE {ANSWERED}) AS asa_s,
    count(DISTINCT agent_extension) FILTER (WHERE {ANSWERED}) AS agents
  FROM cdr
  WHERE queue_name IS NOT NULL
  GROUP BY pbx, call_date, queue_name
)"""

CDR_BY_TRUNK = f"""SELECT pbx, call_date, trunk, direction, {_RATIOS}
FROM (
  SELECT pbx, call_date, trunk, direction, {_COUNTS}
  FROM cdr
  WHERE trunk IS NOT NULL
  GROUP BY pbx, call_date, trunk, direction
)"""

# The local clock is computed from each PBX's zone in `pbxs` (ICU's `timezone(zone, instant)`),
# never from the session's TimeZone setting, so every reader sees the same hours. The UTC offset
# is part of the key: on a fall-back day the repeated hour gives two rows (e.g. 02 at +02:00 and
# 02 at +01:00), and `hour_start` is the instant that local hour began (03:15Z for 09:00 in
# Asia/Kathmandu at +05:45).
CDR_HOURLY = f"""SELECT pbx, call_date, local_hour, utc_offset_min, hour_start, timezone,
  direction, {_RATIOS}
FROM (
  SELECT pbx, call_date, CAST(hour(local_start) AS INTEGER) AS local_hour,
    CAST((epoch(local_start) - epoch(timezone('UTC', start_time))) // 60 AS INTEGER)
      AS utc_offset_min,
    start_time - (local_start - date_trunc('hour', local_start)) AS hour_start,
    timezone, direction, {_COUNTS}
  FROM (
    SELECT c.*, p.timezone, timezone(p.timezone, c.start_time) AS local_start
    FROM cdr AS c
    LEFT JOIN pbxs AS p ON p.pbx = c.pbx
  )
  GROUP BY pbx, call_date, local_hour, utc_offset_min, hour_start, timezone, direction
)"""

#: View name -> (SELECT, the columns it reads from each source view).
_CDR_KPI = {"pbx", "call_date", "cdr_id", "direction", "disposition", "talk_s", "ring_s"}
KPI_VIEWS: dict[str, tuple[str, dict[str, set[str]]]] = {
    "cdr_daily_kpis": (
        CDR_DAILY_KPIS,
        {"cdr": _CDR_KPI, "recordings": {"pbx", "call_date", "cdr_id", "status"}},
    ),
    "cdr_by_extension": (CDR_BY_EXTENSION, {"cdr": _CDR_KPI | {"extension", "agent_extension"}}),
    "cdr_by_queue": (
        CDR_BY_QUEUE,
        {"cdr": _CDR_KPI | {"queue_name", "queue_wait_s", "agent_extension"}},
    ),
    "cdr_by_trunk": (CDR_BY_TRUNK, {"cdr": _CDR_KPI | {"trunk"}}),
    "cdr_hourly": (CDR_HOURLY, {"cdr": _CDR_KPI | {"start_time"}}),
}


def kpi_view_selects(schemas: Mapping[str, pa.Schema], pbxs_select: str) -> dict[str, str]:
    """View name -> SELECT for each KPI view whose source columns `schemas` has (DuckDB binds a
    view when it is created, so a partial schema gets only the views it can answer), plus
    `pbxs` (`pbxs_select`, over the `pbxs` table) when `cdr_hourly` is among them; in creation
    order."""
    views: dict[str, str] = {}
    for name, (sql, needs) in KPI_VIEWS.items():
        if all(t in schemas and cols <= set(schemas[t].names) for t, cols in needs.items()):
            if name == "cdr_hourly":
                views["pbxs"] = pbxs_select
            views[name] = sql
    return views
