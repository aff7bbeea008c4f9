"""videogen.cmd."""
