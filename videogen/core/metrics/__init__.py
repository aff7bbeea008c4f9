"""videogen.core.metrics."""
