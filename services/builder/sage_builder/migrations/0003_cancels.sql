-- One shape for every worker's cancels (sage_common.work): `build_cancels` becomes `cancels`.
ALTER TABLE build_cancels RENAME TO cancels;
ALTER INDEX build_cancels_pkey RENAME TO cancels_pkey;
