-- The profiler service's schema starts empty.
SELECT 1;
