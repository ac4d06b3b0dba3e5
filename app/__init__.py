"""iobench: a FastAPI service whose routes are the article's four cases and their real-driver twins."""
