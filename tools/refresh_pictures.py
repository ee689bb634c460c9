"""Refreshes the README's pictures in docs/images/.

Runs every test that calls ``doc_picture`` (the browser tests and the report's) with
``$DNNIQA_DOC_PICTURES`` set to docs/images, then lists the pictures and checks that they
fit the budget. Needs what the browser tests need (Chromium, the shared photos)::

    .venv/bin/python tools/refresh_pictures.py
"""

import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, "docs", "images")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from doc_pictures import BUDGET_BYTES  # noqa: E402


def picture_tests():
    """The test files that write a picture."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "test_*.py"))):
        with open(path, encoding="utf-8") as f:
            if "doc_picture(" in f.read():
                found.append(os.path.relpath(path, ROOT))
    return found


def main():
    tests = picture_tests()
    env = dict(os.environ, DNNIQA_DOC_PICTURES=FOLDER, DNNIQA_REQUIRE_DATA="1")
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", *tests], cwd=ROOT, env=env)
    total = 0
    for path in sorted(glob.glob(os.path.join(FOLDER, "*.png"))):
        size = os.path.getsize(path)
        total += size
        print(f"{os.path.relpath(path, ROOT):40s} {size / 1000:7.1f} kB")
    print(f"{'total':40s} {total / 1000:7.1f} kB (budget {BUDGET_BYTES / 1000:.0f} kB)")
    if total > BUDGET_BYTES:
        print("over budget: lower doc_pictures.MAX_WIDTH or COLOURS")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
