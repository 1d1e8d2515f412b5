"""``run_workers`` as a program calls it: ``python -m tests.serving.workers_script [ENDPOINT]``; without an
endpoint, on the default one with port 0 for port 8000."""

import sys

from rolo.serving.twisted import workers
from rolo.serving.twisted.workers import run_workers

if __name__ == "__main__":
    workers.DEFAULT_ENDPOINT = workers.DEFAULT_ENDPOINT.replace(":8000:", ":0:")
    sys.exit(run_workers("tests.serving.apps:router", *sys.argv[1:], workers=2, grace_period=5))
