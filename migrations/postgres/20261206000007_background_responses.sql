-- The Responses API body of a background response (`background: true`):
-- its job is shown as a `response` object by GET /v1/responses/{id}.
-- NULL for chat jobs.
ALTER TABLE keel_jobs ADD COLUMN response_request TEXT;
