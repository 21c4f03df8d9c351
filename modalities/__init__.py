"""Pipelines per modality over the specgen core; the `specgen` console command lives in modalities.cli."""
