-- One profile per build: the result as emitted in profile.done, kept for operators and replays.
CREATE TABLE profiles (
    profile_id  uuid PRIMARY KEY,
    build_id    text NOT NULL UNIQUE,
    app_id      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('passed', 'failed')),
    reason      text,
    result      jsonb NOT NULL,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX profiles_app ON profiles (app_id, finished_at DESC);
