-- Which shape of the app document `doc` holds (views.DOC_VERSION when it was computed). At start the
-- service recomputes every document older than its own shape, so a change to what the API shows
-- (such as SAGE's text `keywords` and `source.git_commit`) reaches versions stored before it.
ALTER TABLE apps ADD COLUMN doc_version integer NOT NULL DEFAULT 0;
CREATE INDEX apps_doc_version ON apps (doc_version);
