import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as f:
        return copy.deepcopy(yaml.safe_load(f))


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> count."""
    stats, on = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        parts = line.split()
        if on and parts and parts[0] == "total":
            break
        if on and len(parts) == 2 and parts[1].isdigit():
            stats[parts[0]] = int(parts[1])
    return stats
