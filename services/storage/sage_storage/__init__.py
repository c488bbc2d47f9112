"""The SAGE object store: buckets of training data and models, with ACLs, on S3."""
