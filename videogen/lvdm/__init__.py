"""videogen.lvdm."""
