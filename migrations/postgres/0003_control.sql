-- The control plane (docs/admin.md, "Control"): what each worker applied of the operators'
-- commands, from its heartbeats, and the audit of those commands with their actor.
ALTER TABLE workers ADD COLUMN state TEXT NOT NULL DEFAULT 'running';  -- running | quiet | stopping
ALTER TABLE workers ADD COLUMN paused TEXT NOT NULL DEFAULT '';        -- comma-separated queues

CREATE TABLE control_actions (
    id      BIGSERIAL PRIMARY KEY,
    action  TEXT NOT NULL,                 -- pause | resume | quiet | stop
    target  TEXT NOT NULL,                 -- the queue, or the worker's run id
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL                  -- e.g. "palermo cli (ada@host)"
);
CREATE INDEX control_actions_by_target ON control_actions (target, at);
