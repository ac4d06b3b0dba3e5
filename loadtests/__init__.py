"""iobench load tests: drive the service with ApacheBench and collect results."""
