-- Indexes that return a filtered listing already in its keyset order (namespace, name,
-- version_key), so `?owner=` and `?state=` / `?published=` pages stop after one page of rows
-- instead of sorting every match. They replace the single-column indexes they start with.
CREATE INDEX apps_owner_keyset ON apps (owner, namespace, name, version_key);
DROP INDEX apps_owner;
CREATE INDEX apps_state_keyset ON apps (state, namespace, name, version_key);
DROP INDEX apps_state;
