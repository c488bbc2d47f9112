-- Builds of app versions the catalogue deleted, recorded when `app.deleted` arrives. A late
-- `app.submitted` for one of them finds its cancel in build_cancels and pushes nothing; their
-- digests no longer count as used when another version's deletion meets the same digest.
CREATE TABLE deleted_builds (
    build_id   text PRIMARY KEY,
    app_id     text NOT NULL,
    event_id   uuid NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
