-- A pending login is bound to the browser that started it (login CSRF): the SHA-256 of a random
-- value kept in that browser's HttpOnly cookie. Rows from before have none and are refused.
ALTER TABLE login_states ADD COLUMN browser_hash text NOT NULL DEFAULT '';

-- When a user last logged in through the identity provider (SAGE's `last_login`).
ALTER TABLE users ADD COLUMN last_login_at timestamptz;

-- The token a login made for the portal (its sage_token cookie): revoked when the session ends.
ALTER TABLE sessions ADD COLUMN token_id uuid REFERENCES tokens (id) ON DELETE SET NULL;
