-- One shape for every worker's cancels (sage_common.work): a reason, an optional requester.
ALTER TABLE cancels RENAME COLUMN at TO requested_at;
ALTER TABLE cancels ADD COLUMN reason text;
UPDATE cancels SET reason = 'cancelled by ' || requested_by;
ALTER TABLE cancels ALTER COLUMN reason SET NOT NULL, ALTER COLUMN requested_by DROP NOT NULL;
