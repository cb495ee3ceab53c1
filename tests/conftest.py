"""Suite-wide fixtures."""
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One intra-op thread: small convolutions on a shared 2-core CPU run faster without OpenMP
    spinning, and bit-exact comparisons (resume, chunked vs unchunked) need a fixed thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
