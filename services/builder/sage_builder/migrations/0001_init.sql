-- One row per build id: it is running until its one result is recorded (with build.done).
CREATE TABLE builds (
    build_id    text PRIMARY KEY,
    app_id      text NOT NULL,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'success', 'failure')),
    attempts    integer NOT NULL DEFAULT 1,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    result      jsonb
);
CREATE INDEX builds_running_by_app ON builds (app_id) WHERE status = 'running';

-- Cancels asked for (by build.cancel or by a newer build of the same app), seen by every replica.
CREATE TABLE build_cancels (
    build_id     text PRIMARY KEY,
    app_id       text NOT NULL,
    reason       text NOT NULL,
    requested_by text,
    requested_at timestamptz NOT NULL DEFAULT now()
);
