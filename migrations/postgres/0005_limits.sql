-- Limits (docs/limits.md, "Seeing limits"): each worker's last report of its jobs' limits and
-- its use of them (slots held, jobs sent back to wait), from its heartbeats: a JSON list of
-- the heartbeat's `limits` entries (docs/wire-format.md).
ALTER TABLE workers ADD COLUMN limits TEXT NOT NULL DEFAULT '[]';
