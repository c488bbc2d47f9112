-- The storage service's schema starts empty.
SELECT 1;
