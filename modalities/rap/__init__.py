"""Rap: Freestyler-style lyrics and a beat in, rapped vocals out (data builder so far)."""
