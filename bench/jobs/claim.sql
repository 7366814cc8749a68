-- The physical limit of Keel's claim loop: one job claimed with Keel's own
-- fair claim (tenants in turns, FOR UPDATE SKIP LOCKED) and marked done, two autocommit statements per
-- job, as a Keel worker does (claim, then finish), minus HTTP and upstream.
-- (The aggregate keeps one result row when nothing is left to claim.)
WITH claimed AS (
    UPDATE keel_jobs SET status = 'running', attempts = attempts + 1, lease_token = 'bench', lease_expires_at = 9000000000000
    WHERE id IN (
        WITH RECURSIVE tenants(tenant) AS (
            (SELECT tenant FROM keel_jobs WHERE status = 'queued' ORDER BY tenant LIMIT 1)
            UNION ALL
            SELECT (SELECT next.tenant FROM keel_jobs AS next
                WHERE next.status = 'queued' AND next.tenant > tenants.tenant ORDER BY next.tenant LIMIT 1)
            FROM tenants WHERE tenants.tenant IS NOT NULL)
        SELECT id FROM (
            SELECT due.id, due.run_at, row_number() OVER (PARTITION BY tenants.tenant ORDER BY due.run_at) AS turn
            FROM tenants CROSS JOIN LATERAL (SELECT id, run_at FROM keel_jobs
                WHERE tenant = tenants.tenant AND status = 'queued' AND run_at <= 9000000000000
                ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED) AS due
            WHERE tenants.tenant IS NOT NULL) AS turns
        ORDER BY turn, run_at LIMIT 1)
    RETURNING id
) SELECT coalesce(max(id), '') AS claimed FROM claimed \gset
UPDATE keel_jobs SET status = 'succeeded', result = '{}', finished_at = 1, lease_token = NULL, lease_expires_at = NULL
WHERE id = :claimed AND lease_token = 'bench';
