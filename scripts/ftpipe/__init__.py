"""Code shared by the pipeline's stage scripts (one script per stage lives next to this package)."""
