"""Speed and quality benchmarks against reference tools; each prints one JSON line per run."""
