-- SAGE buckets, their grants, the object index, and the bookkeeping that keeps S3 free of orphans.
-- Blobs live in one S3 bucket under `<bucket id>/<blob id>` (docs/adr/0004-object-store-layout.md).

CREATE TABLE buckets (
    id                uuid PRIMARY KEY,
    name              text NOT NULL DEFAULT '',
    owner             text NOT NULL,
    type              text NOT NULL,
    metadata          jsonb NOT NULL DEFAULT '{}',
    time_created      timestamptz NOT NULL DEFAULT now(),
    time_last_updated timestamptz NOT NULL DEFAULT now(),
    -- set when a delete starts; the bucket is invisible from then on and the delete resumable
    deleting          boolean NOT NULL DEFAULT false,
    bytes_used        bigint NOT NULL DEFAULT 0,
    object_count      bigint NOT NULL DEFAULT 0
);
CREATE INDEX buckets_owner ON buckets (owner);
CREATE INDEX buckets_created ON buckets (time_created, id);
CREATE INDEX buckets_deleting ON buckets (id) WHERE deleting;

CREATE TABLE grants (
    bucket_id    uuid NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    grantee_type text NOT NULL CHECK (grantee_type IN ('USER', 'GROUP')),
    grantee      text NOT NULL,
    permission   text NOT NULL
        CHECK (permission IN ('READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL')),
    PRIMARY KEY (bucket_id, grantee_type, grantee, permission)
);
CREATE INDEX grants_grantee ON grants (grantee_type, grantee);

-- Keys sort bytewise (COLLATE "C") so listings page in S3's order and prefixes are ranges.
CREATE TABLE objects (
    bucket_id     uuid NOT NULL REFERENCES buckets (id),
    key           text COLLATE "C" NOT NULL,
    blob          text NOT NULL,
    size          bigint NOT NULL,
    sha256        text NOT NULL,
    md5           text,
    content_type  text NOT NULL,
    last_modified timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket_id, key)
);

-- Uploads in progress: a row exists from before the first byte reaches S3 until the object row
-- commits or the S3 upload is aborted; the sweeper finishes what a crash left behind.
CREATE TABLE uploads (
    blob       text PRIMARY KEY,
    bucket_id  uuid NOT NULL,
    upload_id  text,
    state      text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'aborting')),
    started_at timestamptz NOT NULL DEFAULT now()
);

-- Blobs no object row points at any more (replaced or deleted), waiting to be deleted from S3.
CREATE TABLE garbage (
    blob  text PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);
