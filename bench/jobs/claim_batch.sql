-- The batched variant: claim up to 16 jobs in one statement and finish them
-- in one more (Keel claims in batches but finishes one job at a time, so
-- this is an upper bound, not Keel's pattern). pgbench's tps × 16 = jobs/s.
\set token random(1, 9000000000000)
UPDATE keel_jobs SET status = 'running', attempts = attempts + 1, lease_token = 'bench', lease_expires_at = :token
WHERE id IN (SELECT id FROM keel_jobs WHERE status = 'queued' AND run_at <= 9000000000000 ORDER BY run_at LIMIT 16 FOR UPDATE SKIP LOCKED);
UPDATE keel_jobs SET status = 'succeeded', result = '{}', finished_at = 1, lease_token = NULL, lease_expires_at = NULL
WHERE status = 'running' AND lease_expires_at = :token;
