"""The embedded local environment: its private server, URLs and make reset."""
