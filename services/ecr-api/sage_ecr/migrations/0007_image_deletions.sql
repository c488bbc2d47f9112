-- Deleted versions whose images the builder has not yet confirmed gone from the registry
-- (`app.deleted` sent, `app.images_deleted` not yet heard). While a row is here its version, its
-- repository's name and its namespace's name cannot be claimed again, by anyone: whoever held the
-- name next would read the old images through the registry's access rules.
CREATE TABLE image_deletions (
    event_id     uuid PRIMARY KEY,      -- the app.deleted event, which the confirmation names
    namespace    text NOT NULL,
    name         text NOT NULL,
    version      text NOT NULL,
    owner        text NOT NULL,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX image_deletions_by_name ON image_deletions (namespace, name, version);
