-- The files of an app's ecr-meta folder (icon, science images, science description), as the
-- builder checked and stored them for the version's current build (build.done.meta_files). The
-- bytes stay in the builder's bucket at `location`; the ECR serves them at
-- /api/meta-files/{ns}/{name}/{version}/{file_name}.
CREATE TABLE meta_files (
    app_id        bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    file_name     text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('thumbnail', 'image', 'science_description')),
    content_type  text NOT NULL,
    size          bigint NOT NULL CHECK (size >= 0),
    sha256        text NOT NULL,
    location      text NOT NULL,
    build_id      uuid NOT NULL,
    position      integer NOT NULL,       -- the builder's order: the app document lists them so
    PRIMARY KEY (app_id, file_name)
);

-- Stored documents written before this migration show the new fields too, empty as SAGE shows
-- them (null). The text is extended, not rewritten, so its key order stays as written.
UPDATE apps SET doc = (left(rtrim(doc::text), -1)
        || ', "thumbnail": null, "images": null, "science_description": null}')::json
    WHERE doc::text <> '{}' AND NOT (doc::jsonb ? 'thumbnail');
