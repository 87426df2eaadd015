"""Read-only views of an environment: the least-privilege audit, its probes and report formats, and the plan report."""
