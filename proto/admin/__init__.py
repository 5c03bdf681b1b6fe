"""Leasehold's own admin services (not part of the partner API)."""
