"""What every SAGE ECR service shares: config, errors, database, bus, auth, metrics and logging."""
