-- Committing an upload in one round trip: the bucket row stays locked only while this runs, so
-- many uploads into one bucket do not queue behind each other's network round trips.
-- Each statement sees what committed before it (plpgsql, READ COMMITTED), so two uploads to one
-- key, serialised by the bucket lock, each find the other's row and retire its blob.
CREATE FUNCTION commit_object(
    p_bucket uuid, p_key text, p_blob text, p_size bigint, p_sha256 text, p_md5 text,
    p_content_type text, p_quota bigint
) RETURNS TABLE (outcome text, old_blob text, used bigint, owner text)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_owner text;
    v_old_blob text;
    v_old_size bigint;
    v_grows bigint;
    v_used bigint;
BEGIN
    SELECT b.owner INTO v_owner FROM buckets b WHERE b.id = p_bucket AND NOT b.deleting FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'gone'::text, NULL::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    SELECT o.blob, o.size INTO v_old_blob, v_old_size
        FROM objects o WHERE o.bucket_id = p_bucket AND o.key = p_key;
    v_grows := p_size - coalesce(v_old_size, 0);
    IF p_quota > 0 AND v_grows > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtext('storage-owner:' || v_owner));
        SELECT coalesce(sum(b.bytes_used), 0) INTO v_used FROM buckets b WHERE b.owner = v_owner;
        IF v_used + v_grows > p_quota THEN
            RETURN QUERY SELECT 'quota'::text, NULL::text, v_used, v_owner;
            RETURN;
        END IF;
    END IF;
    INSERT INTO objects AS o (bucket_id, key, blob, size, sha256, md5, content_type, last_modified)
        VALUES (p_bucket, p_key, p_blob, p_size, p_sha256, p_md5, p_content_type, now())
        ON CONFLICT (bucket_id, key) DO UPDATE SET blob = p_blob, size = p_size,
            sha256 = p_sha256, md5 = p_md5, content_type = p_content_type, last_modified = now();
    IF v_old_blob IS NOT NULL THEN
        INSERT INTO garbage (blob) VALUES (v_old_blob);
    END IF;
    UPDATE buckets b SET bytes_used = b.bytes_used + v_grows,
        object_count = b.object_count + (CASE WHEN v_old_blob IS NULL THEN 1 ELSE 0 END)
        WHERE b.id = p_bucket;
    DELETE FROM uploads u WHERE u.blob = p_blob;
    RETURN QUERY SELECT 'ok'::text, v_old_blob, NULL::bigint, v_owner;
END;
$$;
