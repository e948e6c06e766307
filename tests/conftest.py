import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as f:
        return copy.deepcopy(yaml.safe_load(f))
