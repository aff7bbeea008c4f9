"""videogen.lamd."""
