"""videogen.data."""
