import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is fastest, and it keeps results reproducible on a loaded
    machine. Test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
