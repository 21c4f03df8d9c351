import pytest
import torch

# tiny models gain nothing from a second thread, and one thread per test process keeps timings steady
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gemma_path():
    """Gemma 3 270M's Hugging Face folder: converted from the installed GGUF package on first use (about a minute
    once per machine; scripts/setup.sh installs the package)."""
    from modalities.text.gemma import gemma_folder

    return gemma_folder()
