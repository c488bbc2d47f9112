-- The builder service's schema starts empty.
SELECT 1;
