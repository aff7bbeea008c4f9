"""videogen.core.nn."""
