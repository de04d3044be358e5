-- The dashboard filters and counts open failures by error kind (the Failed page's "Error kind"
-- filter and its choices): this index answers both without scanning the table.
CREATE INDEX failures_by_kind ON failures (status, error_kind, failed_at);
