-- Palermo's admin store (SQLite). Every time is milliseconds since the Unix epoch, UTC.
-- docs/admin.md explains each table; migrations/postgres holds the same schema for PostgreSQL.

-- One row per message recorded from the failed queue: what lists and searches read (the
-- bulky parts are in failure_payloads, so that a search scans small rows).
CREATE TABLE failures (
    id              TEXT PRIMARY KEY,      -- x-palermo-failure-id: the idempotency key
    job_id          TEXT NOT NULL,         -- AMQP message_id ('' when the message had none)
    job_name        TEXT NOT NULL,         -- x-palermo-job ('' when unreadable)
    queue           TEXT NOT NULL,         -- where a retry publishes: x-palermo-queue, else the source queue
    source_queue    TEXT NOT NULL,         -- x-palermo-source-queue: the queue the worker consumed
    serializer      TEXT NOT NULL,         -- json, msgpack, or '' when unknown
    args_preview    TEXT NOT NULL,
    error_kind      TEXT NOT NULL,         -- error, panic, timeout, malformed, unknown_job, undecodable...
    error           TEXT NOT NULL,
    search_text     TEXT NOT NULL,         -- lowercased job name, error and preview: what --search scans
    gave_up         TEXT,                  -- x-palermo-gave-up: why no automatic retry followed
    attempt         BIGINT NOT NULL,
    max_attempts    BIGINT,
    worker          TEXT NOT NULL,         -- hostname:pid:queues
    enqueued_at     BIGINT,
    first_failed_at BIGINT NOT NULL,
    failed_at       BIGINT NOT NULL,
    recorded_at     BIGINT NOT NULL,
    status          TEXT NOT NULL,         -- failed | retried | removed
    resolved_at     BIGINT                 -- when it was retried or removed
);
CREATE INDEX failures_by_time ON failures (status, failed_at);
CREATE INDEX failures_by_queue ON failures (status, queue, failed_at);
CREATE INDEX failures_by_job ON failures (status, job_name, failed_at);
CREATE INDEX failures_by_job_id ON failures (job_id);
CREATE INDEX failures_by_resolved_at ON failures (resolved_at);

-- The rest of each failure, for `failed show` and retries.
CREATE TABLE failure_payloads (
    failure_id    TEXT PRIMARY KEY,      -- failures.id
    body          BLOB NOT NULL,         -- the serialized arguments, untouched
    properties    TEXT NOT NULL,         -- the AMQP properties as received (JSON), for a faithful retry
    backtrace     TEXT,
    error_history TEXT                   -- x-palermo-error-history: earlier failed attempts (JSON array)
);

-- What people did to failures: the retry and removal history.
CREATE TABLE failure_actions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    failure_id TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    action     TEXT NOT NULL,              -- retried | removed
    queue      TEXT,                       -- retried: the queue the job was published to
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL               -- e.g. "palermo cli (ada@host)"
);
CREATE INDEX failure_actions_by_failure ON failure_actions (failure_id);
CREATE INDEX failure_actions_by_job ON failure_actions (job_id);

-- One row per run of a worker, from its heartbeats.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,         -- the heartbeat's id: new at every worker start
    identity     TEXT NOT NULL,            -- hostname:pid:queues
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    queues       TEXT NOT NULL,            -- comma-separated
    concurrency  BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,          -- sent_at of the latest event
    interval_ms  BIGINT NOT NULL,          -- its heartbeat interval
    seq          BIGINT NOT NULL,          -- seq of the latest event (older ones are ignored)
    processed    BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    running      TEXT NOT NULL,            -- the jobs in flight (JSON array)
    status       TEXT NOT NULL,            -- alive | stopped | gone
    ended_at     BIGINT                    -- when it stopped or was found gone
);
CREATE INDEX workers_by_status ON workers (status, last_seen_at);

-- The last cumulative counts seen from each worker run, to turn heartbeats into increments.
CREATE TABLE worker_counters (
    worker_id TEXT NOT NULL,
    queue     TEXT NOT NULL,
    job       TEXT NOT NULL,
    processed BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (worker_id, queue, job)
);

-- Throughput per minute, queue and job.
CREATE TABLE stats_minutes (
    minute    BIGINT NOT NULL,             -- the minute's start
    queue     TEXT NOT NULL,
    job       TEXT NOT NULL,
    processed BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (minute, queue, job)
);

-- All-time totals per queue and job (minute buckets are pruned, totals are not).
CREATE TABLE stats_totals (
    queue     TEXT NOT NULL,
    job       TEXT NOT NULL,
    processed BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (queue, job)
);
