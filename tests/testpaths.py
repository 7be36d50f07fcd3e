"""Where things are, for tests in any folder of tests/ (pytest puts tests/ on sys.path)."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent       # the shared fakes, oracles and helper apps
REPO = TESTS.parent
