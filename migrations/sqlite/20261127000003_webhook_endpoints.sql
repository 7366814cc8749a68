-- Webhook endpoints (a tenant's receiver URL) that are failing or disabled.
-- A row exists only while deliveries to the endpoint fail: the first failure
-- after a success sets failing_since, any success deletes the row, and an
-- endpoint failing for webhooks.disable_after (or answering 410 Gone) gets
-- disabled_at. Redelivering a job's webhook by hand deletes the row.
CREATE TABLE keel_webhook_endpoints (
    tenant        TEXT NOT NULL,
    url           TEXT NOT NULL,
    failing_since INTEGER NOT NULL,
    disabled_at   INTEGER,
    last_error    TEXT,
    PRIMARY KEY (tenant, url)
);
