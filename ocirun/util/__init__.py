"""Small helpers shared across ocirun (no imports of their own)."""
