"""Training recipes: causal LMs over token files (any modality), and drafter adaptation (PARD)."""
