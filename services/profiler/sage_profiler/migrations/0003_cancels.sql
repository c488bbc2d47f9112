-- Builds the ECR cancelled (a rebuild superseded them): never profiled, whenever build.done comes.
CREATE TABLE cancels (
    build_id     text PRIMARY KEY,
    app_id       text NOT NULL,
    requested_by text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
