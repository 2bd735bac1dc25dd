"""`prefrestore restore` with an identity restorer, for tests/test_distributed_restore.py (run under torchrun).

    torchrun --nproc_per_node 2 tests/dist_restore_worker.py restore IN -o OUT

The restorer returns its input (so the outputs test the sharding, not a model). With
``PREFRESTORE_TEST_KILL_RANK=R`` the rank R SIGKILLs itself at its second restorer call: a rank dying mid-run.
With ``PREFRESTORE_TEST_FAKE_CUDA=N`` torch reports N CUDA GPUs (none is used: the restorer is the identity and the
detector is built on the CPU) and each rank prints the devices the command gave the restorer and the detector.
"""

import os
import signal
import sys

from prefrestore import cli
from prefrestore.restore import api


class IdentityRestorer:
    resolution = 128

    def __init__(self):
        self.calls = 0

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        self.calls += 1
        if self.calls >= 2 and os.environ.get("PREFRESTORE_TEST_KILL_RANK") == os.environ.get("RANK"):
            os.kill(os.getpid(), signal.SIGKILL)
        return [f.copy() for f in faces]


def main() -> int:
    print(f"worker rank {os.environ.get('RANK', 0)}/{os.environ.get('WORLD_SIZE', 1)}", file=sys.stderr)
    api.load_restorer = lambda *args, **kwargs: IdentityRestorer()
    if os.environ.get("PREFRESTORE_TEST_FAKE_CUDA"):
        _fake_cuda(int(os.environ["PREFRESTORE_TEST_FAKE_CUDA"]))
    return cli.main(sys.argv[1:])


def _fake_cuda(count: int) -> None:
    import torch

    from prefrestore.faces import detect
    from prefrestore.restore.distributed import Ranks

    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: count
    rank, build = Ranks.from_env().rank, detect.build_detector

    def load_restorer(*args, device="cpu", **kwargs):
        print(f"rank {rank} restorer device {device}", file=sys.stderr)
        return IdentityRestorer()

    def build_detector(*args, device="cpu", **kwargs):
        print(f"rank {rank} detector device {device}", file=sys.stderr)
        return build(*args, **kwargs)

    api.load_restorer, detect.build_detector = load_restorer, build_detector


if __name__ == "__main__":
    sys.exit(main())
