"""`prefrestore restore` with an identity restorer, for tests/test_distributed_restore.py (run under torchrun).

    torchrun --nproc_per_node 2 tests/dist_restore_worker.py restore IN -o OUT

The restorer returns its input (so the outputs test the sharding, not a model). With
``PREFRESTORE_TEST_KILL_RANK=R`` the rank R SIGKILLs itself at its second restorer call: a rank dying mid-run.
"""

import os
import signal
import sys

from prefrestore import api, cli


class IdentityRestorer:
    resolution = 128

    def __init__(self):
        self.calls = 0

    def restore(self, faces, *, seed=0):
        self.calls += 1
        if self.calls >= 2 and os.environ.get("PREFRESTORE_TEST_KILL_RANK") == os.environ.get("RANK"):
            os.kill(os.getpid(), signal.SIGKILL)
        return [f.copy() for f in faces]


def main() -> int:
    print(f"worker rank {os.environ.get('RANK', 0)}/{os.environ.get('WORLD_SIZE', 1)}", file=sys.stderr)
    api.load_restorer = lambda *args, **kwargs: IdentityRestorer()
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
