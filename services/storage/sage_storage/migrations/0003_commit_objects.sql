-- Committing several uploads into one bucket in one transaction (store.py gathers the uploads that
-- finish while a commit runs): commit_object updates the bucket row, so commits into one bucket
-- run one after another, each waiting for its own WAL flush; one transaction for a burst waits for
-- one. Each upload is committed exactly as commit_object does it, in the order given.
CREATE FUNCTION commit_objects(
    p_bucket uuid, p_keys text[], p_blobs text[], p_sizes bigint[], p_sha256 text[],
    p_md5 text[], p_content_types text[], p_quota bigint
) RETURNS TABLE (blob text, outcome text, old_blob text, used bigint, owner text)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_blobs, 1), 0) LOOP
        RETURN QUERY SELECT p_blobs[i], c.outcome, c.old_blob, c.used, c.owner
            FROM commit_object(p_bucket, p_keys[i], p_blobs[i], p_sizes[i], p_sha256[i],
                               p_md5[i], p_content_types[i], p_quota) AS c;
    END LOOP;
END;
$$;
