-- Where the builder said it writes the build's live log (build.started.log_location), so that the
-- log can be followed from where it is, not from where the ECR guesses it is.
ALTER TABLE builds ADD COLUMN log_location text;
