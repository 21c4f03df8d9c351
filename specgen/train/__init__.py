"""Training recipes: causal LMs over token files (any modality, `lm`), drafter adaptation (PARD, `pard`) and draft
heads on a frozen target (`heads`, with their `losses`). Each recipe takes a config dataclass (`LMConfig`,
`PardConfig`, `HeadsConfig`, `CalibrateConfig`); the `specgen` command builds them from its options."""
