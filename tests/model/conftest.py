import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models and tensors: one thread is as fast, and immune to OpenMP wake-up stalls on a busy
    machine (a second thread mostly added sync waits there: measured 30x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
