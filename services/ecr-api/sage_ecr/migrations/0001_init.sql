-- The catalogue: namespaces, repositories, their access control lists, app versions, their builds
-- and the history of every version's pipeline state.

CREATE TABLE namespaces (
    name        text PRIMARY KEY,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repositories (
    namespace   text NOT NULL REFERENCES namespaces (name),
    name        text NOT NULL,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name)
);

-- resource_name is `ns` for a namespace and `ns/name` for a repository, as SAGE names them.
CREATE TABLE permissions (
    resource_type text NOT NULL CHECK (resource_type IN ('namespace', 'repository')),
    resource_name text NOT NULL,
    grantee_type  text NOT NULL CHECK (grantee_type IN ('USER', 'GROUP')),
    grantee       text NOT NULL,
    permission    text NOT NULL
        CHECK (permission IN ('READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL')),
    PRIMARY KEY (resource_type, resource_name, grantee_type, grantee, permission)
);
CREATE INDEX permissions_by_grantee ON permissions (grantee_type, grantee, resource_type);

CREATE TABLE apps (
    id              bigserial PRIMARY KEY,
    namespace       text NOT NULL,
    name            text NOT NULL,
    version         text NOT NULL,
    version_key     text NOT NULL,          -- sorts like semver precedence
    owner           text NOT NULL,
    spec            json NOT NULL,          -- the validated app description, as submitted
    architectures   text[] NOT NULL,
    gpu             text NOT NULL,
    state           text NOT NULL,
    frozen          boolean NOT NULL DEFAULT false,
    build_number    integer NOT NULL DEFAULT 0,
    build_id        uuid,                   -- the current build; events for others change nothing
    reviewer        text,
    review_comment  text,
    reviewed_at     timestamptz,
    search          tsvector NOT NULL,
    doc             json NOT NULL,          -- the app as the API shows it, but `public`
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name, version),
    FOREIGN KEY (namespace, name) REFERENCES repositories (namespace, name)
);
CREATE UNIQUE INDEX apps_keyset ON apps (namespace, name, version_key);
CREATE INDEX apps_owner ON apps (owner);
CREATE INDEX apps_state ON apps (state);
CREATE INDEX apps_search ON apps USING gin (search);
CREATE INDEX apps_architectures ON apps USING gin (architectures);

CREATE TABLE builds (
    build_id        uuid PRIMARY KEY,
    app_id          bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    build_number    integer NOT NULL,
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    started_event   text,
    finished_at     timestamptz,
    status          text CHECK (status IN ('success', 'failure')),
    done            jsonb,                  -- the build.done data
    done_event      text,
    profile_status  text CHECK (profile_status IN ('passed', 'failed')),
    profile         jsonb,                  -- the profile.done data
    profile_event   text,
    profiled_at     timestamptz,
    UNIQUE (app_id, build_number)
);

CREATE TABLE app_history (
    id            bigserial PRIMARY KEY,
    app_id        bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    from_state    text,
    to_state      text NOT NULL,
    cause         text NOT NULL,
    event_id      text,
    build_number  integer,
    actor         text
);
CREATE INDEX app_history_by_app ON app_history (app_id, id);
