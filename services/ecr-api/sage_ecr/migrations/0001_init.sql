-- The ECR API's schema starts empty; the catalogue tables arrive with the catalogue.
SELECT 1;
