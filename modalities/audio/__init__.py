"""Network definitions that are not plain causal LMs, and models/zoo/: the checkpoints trained here."""
