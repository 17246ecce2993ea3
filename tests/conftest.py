import os
import random

import numpy as np
import pytest
import torch

# No background compile of umap-learn in test processes and the servers they start: it would take
# a core for a minute in every run. Tests of the reference engine call it themselves.
os.environ.setdefault("EXPLORER_WARM_UMAP", "0")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
