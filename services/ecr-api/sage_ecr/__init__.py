"""The Edge Code Repository API: the catalogue of apps, and the pipeline that publishes them."""
