-- Per-tenant queued jobs: counted at submit for tenants[].limits.max_queued_jobs,
-- and walked oldest first per tenant by the fair claim.
CREATE INDEX keel_jobs_tenant_queued ON keel_jobs (tenant, run_at) WHERE status = 'queued';
