"""videogen.core."""
