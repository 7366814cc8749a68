-- Postgres only (SQLite has no NOTIFY); kept so both backends share versions.
SELECT 1;
