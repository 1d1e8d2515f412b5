"""``run_workers`` as a program calls it: ``python -m tests.serving.workers_script ENDPOINT``."""

import sys

from rolo.serving.twisted.workers import run_workers

if __name__ == "__main__":
    sys.exit(run_workers("tests.serving.apps:router", sys.argv[1], workers=2, grace_period=5))
