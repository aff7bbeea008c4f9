"""videogen.bench."""
