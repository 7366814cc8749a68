-- Jobs, their webhook delivery state, and idempotency keys.
-- Times are Unix milliseconds written by Keel (INTEGER), the same on both backends.

CREATE TABLE keel_jobs (
    id                 TEXT PRIMARY KEY,
    tenant             TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    model              TEXT NOT NULL,
    request            TEXT NOT NULL,
    metadata           TEXT,
    created_at         INTEGER NOT NULL,
    started_at         INTEGER,
    finished_at        INTEGER,
    run_at             INTEGER NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    lease_token        TEXT,
    lease_expires_at   INTEGER,
    result             TEXT,
    error              TEXT,
    webhook_url        TEXT,
    webhook_status     TEXT CHECK (webhook_status IN ('pending', 'delivered', 'failed')),
    webhook_attempts   INTEGER NOT NULL DEFAULT 0,
    webhook_last_error TEXT,
    webhook_next_at    INTEGER
);

CREATE INDEX keel_jobs_queued ON keel_jobs (run_at) WHERE status = 'queued';
CREATE INDEX keel_jobs_running ON keel_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX keel_jobs_tenant ON keel_jobs (tenant, id);
CREATE INDEX keel_jobs_webhook_due ON keel_jobs (webhook_next_at) WHERE webhook_status = 'pending';
CREATE INDEX keel_jobs_finished ON keel_jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE keel_idempotency_keys (
    tenant          TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
);

CREATE INDEX keel_idempotency_keys_created ON keel_idempotency_keys (created_at);
