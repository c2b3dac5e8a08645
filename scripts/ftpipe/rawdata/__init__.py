"""What only reading the raw catalog uses (the prepare stage): formats, columns, repairs, parsing in worker
processes, near-duplicate grouping and the split's contamination check."""
