"""This process's place in a ``torchrun`` / ``accelerate launch`` launch, and the device it restores on.

:func:`rank_device` is the one place a launch picks the GPU (``cuda`` -> ``cuda:LOCAL_RANK``): the pipeline
(:func:`prefrestore.restore.loaded.load_pipeline`) calls it, and ``distributed.py`` shares the inputs out by
:class:`Ranks`. It sits low in the ``restore`` package so that the pipeline, which ``file_run`` runs, can use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place in a launch; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ranks:
        """The launcher's variables: torchrun's (and ``accelerate launch --multi_gpu``'s) ``RANK``/``WORLD_SIZE``/
        ``LOCAL_RANK``, else the MPI names ``accelerate launch`` reads for its multi-CPU launches (Intel MPI / MPICH
        ``PMI_*`` and ``MPI_LOCALRANKID``, Open MPI ``OMPI_COMM_WORLD_*``, MVAPICH ``MV2_COMM_WORLD_*``), in
        accelerate's order."""
        env = os.environ if env is None else env
        try:
            world = _first_int(env, WORLD_SIZE_VARS, 1)
            rank = _first_int(env, RANK_VARS, 0)
            local = _first_int(env, LOCAL_RANK_VARS, rank)
        except ValueError as err:
            raise UserError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({err}); start with torchrun") from None
        if world < 1 or not 0 <= rank < world:
            raise UserError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
        return cls(rank, world, local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """The device this rank uses for ``--device device`` (the one place a launch picks the GPU; validate the
        result with :func:`prefrestore.restore.options.check_device`): ``cuda`` -> ``cuda:LOCAL_RANK`` when several
        processes were launched; an explicit ``cuda:N``, ``cpu`` or ``mps`` unchanged."""
        return f"cuda:{self.local_rank}" if device.strip() == "cuda" and self.world_size > 1 else device


# The variable names of each value, first found wins (accelerate.utils.environment's order).
RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_RANK_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK")


def _first_int(env: Mapping[str, str], names: tuple[str, ...], default: int) -> int:
    for name in names:
        if env.get(name, "").strip():
            return int(env[name])
    return default


def rank_device(spec: str, ranks: Ranks | None = None) -> str:
    """``--device spec`` for this process -> a checked canonical device name: the launch's mapping
    (:meth:`Ranks.device`), then :func:`~prefrestore.restore.options.check_device` (a one-line error when the machine lacks
    it). Every command that takes ``--device`` under a launcher goes through here."""
    from .options import check_device

    return check_device((ranks or Ranks.from_env()).device(spec))
