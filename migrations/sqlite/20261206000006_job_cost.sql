-- What a succeeded job's answer cost in USD (usage × its target's price);
-- NULL when its target has no price.
ALTER TABLE keel_jobs ADD COLUMN cost_usd REAL;
