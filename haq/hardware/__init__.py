"""Hardware targets: profiles, latency tables and measurement harnesses."""
