-- Versions are any registry tag now (SAGE's `1.0`, `0.24.8.20`), sorted numerically by the key
-- that `sage_ecr.spectypes.version_key` computes: compared byte by byte whatever the database's
-- collation, and rewritten for the rows stored under the old semver-only key
-- (`MAJOR.MINOR.PATCH` padded, then `~` or `-PRERELEASE`), which became
-- `1` + four padded numbers + the same ending + ' ' + the version.
ALTER TABLE apps ALTER COLUMN version_key TYPE text COLLATE "C";

UPDATE apps
   SET version_key = '1' || substr(version_key, 1, 32) || '.0000000000'
                     || substr(version_key, 33) || ' ' || version
 WHERE version_key ~ '^[0-9]{10}\.[0-9]{10}\.[0-9]{10}(~|-)';
