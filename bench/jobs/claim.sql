-- The physical limit of Keel's claim loop: one job claimed with
-- FOR UPDATE SKIP LOCKED and marked done, two autocommit statements per
-- job, as a Keel worker does (claim, then finish), minus HTTP and upstream.
-- (The aggregate keeps one result row when nothing is left to claim.)
WITH claimed AS (
    UPDATE keel_jobs SET status = 'running', attempts = attempts + 1, lease_token = 'bench', lease_expires_at = 9000000000000
    WHERE id IN (SELECT id FROM keel_jobs WHERE status = 'queued' AND run_at <= 9000000000000 ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id
) SELECT coalesce(max(id), '') AS claimed FROM claimed \gset
UPDATE keel_jobs SET status = 'succeeded', result = '{}', finished_at = 1, lease_token = NULL, lease_expires_at = NULL
WHERE id = :claimed AND lease_token = 'bench';
