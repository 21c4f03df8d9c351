import torch

# tiny models gain nothing from a second thread, and one thread per test process keeps timings steady
torch.set_num_threads(1)
