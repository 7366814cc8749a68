-- Jobs, their webhook delivery state, and idempotency keys.
-- Times are Unix milliseconds written by Keel (BIGINT), the same on both backends.

CREATE TABLE keel_jobs (
    id                 TEXT PRIMARY KEY,
    tenant             TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    model              TEXT NOT NULL,
    request            TEXT NOT NULL,
    metadata           TEXT,
    created_at         BIGINT NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT,
    run_at             BIGINT NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    lease_token        TEXT,
    lease_expires_at   BIGINT,
    result             TEXT,
    error              TEXT,
    webhook_url        TEXT,
    webhook_status     TEXT CHECK (webhook_status IN ('pending', 'delivered', 'failed')),
    webhook_attempts   BIGINT NOT NULL DEFAULT 0,
    webhook_last_error TEXT,
    webhook_next_at    BIGINT
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
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);

CREATE INDEX keel_idempotency_keys_created ON keel_idempotency_keys (created_at);

-- Wakes idle workers on every instance (LISTEN keel_jobs) when jobs arrive.
CREATE FUNCTION keel_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keel_jobs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER keel_jobs_inserted AFTER INSERT ON keel_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION keel_jobs_notify();
