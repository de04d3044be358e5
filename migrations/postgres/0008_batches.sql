-- Batches (docs/workflows.md, "Batches"): a batch from its opened events, one row per member
-- from the members' outcomes, and the state of each callback. A member's state only moves
-- up (0 pending, 1 failed, 2 succeeded), so a redelivered or repeated event counts once and
-- events apply in any order.
CREATE TABLE batches (
    id                  TEXT PRIMARY KEY,
    description         TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    total               BIGINT NOT NULL,        -- members named by the opened events
    last_event_at       BIGINT NOT NULL,
    finished_at         BIGINT,                 -- when no member was pending any more
    on_success          TEXT,                   -- the callback job (wire Callback), JSON
    on_complete         TEXT,
    success_state       TEXT NOT NULL,          -- none | pending | firing | fired
    success_claimed_at  BIGINT,                 -- when a recorder took it to fire
    success_fired_at    BIGINT,
    complete_state      TEXT NOT NULL,
    complete_claimed_at BIGINT,
    complete_fired_at   BIGINT
);
CREATE INDEX batches_by_created ON batches (created_at);
CREATE INDEX batches_by_finished ON batches (finished_at);

CREATE TABLE batch_members (
    batch_id    TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    state       INTEGER NOT NULL,               -- 0 pending, 1 failed, 2 succeeded
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (batch_id, job_id)
);
CREATE INDEX batch_members_by_state ON batch_members (batch_id, state);
