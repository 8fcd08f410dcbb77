"""Suite-wide test settings."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/tiny.py


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread per test module: the tests run tiny tensors, for which OpenMP's
    spinning workers cost more than they give, badly so when the 2 cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
