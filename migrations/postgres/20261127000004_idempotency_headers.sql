-- The gateway headers of a stored response (x-keel-provider, -model,
-- -attempts), replayed with it; a JSON list of [name, value] pairs.
ALTER TABLE keel_idempotency_keys ADD COLUMN response_headers TEXT;
