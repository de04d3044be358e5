-- Per-job metrics (docs/admin.md, "Metrics"): run-time and wait histograms from the
-- heartbeats' `timings`, and the blocked state of workers; the record of failure prunes.

-- Histogram buckets per minute, queue, job and kind: the differences the recorder saw
-- between heartbeats, as stats_minutes holds the counters'.
CREATE TABLE timing_minutes (
    minute BIGINT NOT NULL,                -- the minute's start
    queue  TEXT NOT NULL,
    job    TEXT NOT NULL,
    kind   TEXT NOT NULL,                  -- duration (run time) | latency (wait to start)
    le_ms  BIGINT NOT NULL,                -- the bucket's upper bound, ms, inclusive; 9223372036854775807 for the last, unbounded one
    count  BIGINT NOT NULL,
    sum_us BIGINT NOT NULL,                -- the sum of the bucket's observations, µs
    PRIMARY KEY (minute, queue, job, kind, le_ms)
);

-- All-time buckets (minute rows are pruned, these are not): /metrics' histograms.
CREATE TABLE timing_totals (
    queue  TEXT NOT NULL,
    job    TEXT NOT NULL,
    kind   TEXT NOT NULL,
    le_ms  BIGINT NOT NULL,
    count  BIGINT NOT NULL,
    sum_us BIGINT NOT NULL,
    PRIMARY KEY (queue, job, kind, le_ms)
);

-- The last cumulative buckets seen from each worker run, to turn heartbeats into increments.
CREATE TABLE worker_timings (
    worker_id TEXT NOT NULL,
    queue     TEXT NOT NULL,
    job       TEXT NOT NULL,
    kind      TEXT NOT NULL,
    le_ms     BIGINT NOT NULL,
    count     BIGINT NOT NULL,
    sum_us    BIGINT NOT NULL,
    PRIMARY KEY (worker_id, queue, job, kind, le_ms)
);

-- Why the broker blocks the worker's connection (a resource alarm), from its last heartbeat.
ALTER TABLE workers ADD COLUMN blocked TEXT;

-- Every prune of failures, so that none is silent: by whom, by which rule, how many.
CREATE TABLE failure_prunes (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,                  -- e.g. "palermo cli (ada@host)", "recorder retention policy"
    rule   TEXT NOT NULL,                  -- e.g. "older than 90d", "beyond the newest 10000"
    pruned BIGINT NOT NULL                 -- failures deleted
);
CREATE INDEX failure_prunes_by_time ON failure_prunes (at);

-- prune_failures reads failures by age alone.
CREATE INDEX failures_by_failed_at ON failures (failed_at, id);
