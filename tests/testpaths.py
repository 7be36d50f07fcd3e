"""Where things are, for tests in any folder of tests/ (pytest puts tests/ on sys.path)."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent       # the shared fakes, oracles and helper apps
REPO = TESTS.parent
SHARED = REPO.parent / "shared"               # llama.cpp reference data beside the checkout


def shown(path) -> str:
    """A path for a skip or failure message: one under ../shared as `../shared/...`, whatever
    directory the checkout lives in; any other path as it is."""
    path = Path(path)
    try:
        return str(Path("..", "shared", path.resolve().relative_to(SHARED.resolve())))
    except (ValueError, OSError):
        return str(path)
