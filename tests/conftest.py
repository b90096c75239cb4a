import os

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 runs two workers on two cores: more threads each would only fight.
    torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
