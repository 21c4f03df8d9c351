"""Pipelines per modality over the specgen core, with what they share (audio/, the special token ids, the corpus
reader, the benchmark and batch harnesses); the `specgen` command and the demo live above them in specgen_apps."""
