-- Users, groups, memberships, user tokens (stored only as SHA-256), OIDC identities, sessions and
-- pending logins.
CREATE TABLE users (
    username    text PRIMARY KEY CHECK (username ~ '^[a-z][a-z0-9_.-]{1,63}$'),
    name        text NOT NULL DEFAULT '',
    email       text NOT NULL DEFAULT '',
    is_admin    boolean NOT NULL DEFAULT false,
    is_approved boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.-]{1,63}$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    username   text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    group_name text NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, group_name)
);
CREATE INDEX memberships_by_group ON memberships (group_name);

CREATE TABLE tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash   text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    username     text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    name         text NOT NULL,
    scopes       text[] NOT NULL DEFAULT '{}',
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX tokens_by_user ON tokens (username, created_at);

-- Who a user is at an OpenID provider: (issuer, subject) is stable, the username is ours.
CREATE TABLE identities (
    issuer     text NOT NULL,
    subject    text NOT NULL,
    username   text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_by_user ON identities (username);

CREATE TABLE sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_hash text NOT NULL UNIQUE,
    username     text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (username);

-- A login in progress: the state sent to the provider, with the nonce and PKCE verifier it needs.
CREATE TABLE login_states (
    state_hash    text PRIMARY KEY,
    nonce         text NOT NULL,
    code_verifier text NOT NULL,
    next_path     text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX login_states_expiry ON login_states (expires_at);
