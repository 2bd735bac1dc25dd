"""Restoring one archive with many processes: ``torchrun`` / ``accelerate launch`` shard the inputs by rank.

    torchrun --nproc_per_node 8 -m prefrestore restore IN -o OUT --device cuda
    accelerate launch --num_processes 8 -m prefrestore restore IN -o OUT --device cuda

Both launchers set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``); with
``WORLD_SIZE`` > 1 the ranks join one gloo process group (CPU tensors: it only carries a few kilobytes of JSON, so
it works the same beside NCCL on GPUs and across nodes). Then:

1. rank 0 plans the run (lists the inputs, decides what is skipped because its output exists) and broadcasts the
   plan, so every rank works from the same list, fixed before anyone writes;
2. each rank takes every ``world_size``-th input (:func:`shard`), loads its own restorer on its own device
   (``cuda`` -> ``cuda:LOCAL_RANK``) and batches its own faces; the outputs of an input do not depend on which
   rank restored it, so the files are those of one process;
3. the ranks' summaries are gathered and rank 0 prints one merged summary (:func:`merge_summaries`), in the order
   one process would have printed it.

A killed rank: the launcher stops the others; re-running the same command skips every input whose output was
written (the skip-existing rule of one process) and shares out the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch

from ..errors import UserError
from ..io.io_safety import InputGuard
from .file_run import FileItem, Plan, RunSummary
from .ranks import Ranks, rank_device  # noqa: F401 - rank_device re-exported (this module's public API)

# How long a rank waits for the others (the final gather waits for the slowest shard): a week by default.
TIMEOUT_ENV = "PREFRESTORE_DIST_TIMEOUT_S"


# ----------------------------------------------------------------------------------------------------------------
# Plans and summaries as JSON (what travels between ranks)


def plan_to_json(plan: Plan) -> dict:
    return {
        "todo": [[str(i.path), i.name] for i in plan.todo],
        "skipped": [[str(i.path), i.name] for i in plan.skipped],
        "failed": [list(f) for f in plan.failed],
        "guard": plan.guard.paths,
    }


def plan_from_json(d: dict) -> Plan:
    return Plan(
        tuple(FileItem(Path(p), n) for p, n in d["todo"]),
        tuple(FileItem(Path(p), n) for p, n in d["skipped"]),
        tuple((p, m) for p, m in d["failed"]),
        InputGuard(d["guard"]),
    )


def summary_to_json(s: RunSummary) -> dict:
    return {
        "restored": list(s.restored),
        "no_face": list(s.no_face),
        "skipped": list(s.skipped),
        "failed": [list(f) for f in s.failed],
        "faces": s.faces,
        "flagged": s.flagged,
        "fallback": s.fallback,
    }


def summary_from_json(d: dict) -> RunSummary:
    return RunSummary(
        tuple(d["restored"]),
        tuple(d["no_face"]),
        tuple(d["skipped"]),
        tuple((p, m) for p, m in d["failed"]),
        int(d["faces"]),
        flagged=int(d.get("flagged", 0)),
        fallback=int(d.get("fallback", 0)),
    )


def shard(plan: Plan, ranks: Ranks) -> Plan:
    """This rank's part: inputs ``rank``, ``rank + world_size``, ...; rank 0 also carries the plan's skipped and
    failed entries, so the merged summary counts them once."""
    todo = plan.todo[ranks.rank :: ranks.world_size]
    if ranks.is_main:
        return dataclasses.replace(plan, todo=todo)
    return dataclasses.replace(plan, todo=todo, skipped=(), failed=())  # the guard stays: every input of the run


def merge_summaries(plan: Plan, parts: list[RunSummary]) -> RunSummary:
    """The ranks' summaries -> the summary one process would have made: lists in input order, the plan's own
    failures first (as ``run_plan`` reports them), faces summed."""
    order = {str(i.path): k for k, i in enumerate(plan.todo)}

    def ordered(values):
        return tuple(sorted(values, key=lambda v: order.get(v, -1)))

    planned = set(plan.failed)
    failed = [f for p in parts for f in p.failed if f not in planned]
    return RunSummary(
        restored=ordered(r for p in parts for r in p.restored),
        no_face=ordered(r for p in parts for r in p.no_face),
        skipped=tuple(str(i.path) for i in plan.skipped),
        failed=tuple(plan.failed) + tuple(sorted(failed, key=lambda f: order.get(f[0], -1))),
        faces=sum(p.faces for p in parts),
        flagged=sum(p.flagged for p in parts),
        fallback=sum(p.fallback for p in parts),
    )


# ----------------------------------------------------------------------------------------------------------------
# The process group


class RankGroup:
    """A context manager around the launch: joins (and leaves) the gloo group when there are several ranks, and
    does nothing in a single process."""

    def __init__(self, ranks: Ranks | None = None):
        self.ranks = ranks or Ranks.from_env()
        self._owns_group = False

    def __enter__(self) -> RankGroup:
        if self.ranks.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
                    raise UserError(
                        f"WORLD_SIZE={self.ranks.world_size} but MASTER_ADDR/MASTER_PORT are not set; "
                        "start with torchrun or accelerate launch"
                    )
                timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 7 * 24 * 3600)))
                dist.init_process_group(
                    "gloo", rank=self.ranks.rank, world_size=self.ranks.world_size, timeout=timeout
                )
                self._owns_group = True
        return self

    def __exit__(self, *exc) -> None:
        if self._owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()

    @property
    def is_main(self) -> bool:
        return self.ranks.is_main

    def broadcast_json(self, make: Callable[[], object]) -> object:
        """``make()`` on rank 0, its JSON value on every rank. A UserError raised by ``make`` is raised on all."""
        if self.ranks.world_size == 1:
            return make()
        import torch.distributed as dist

        payload = None
        if self.is_main:
            try:
                payload = {"value": make()}
            except UserError as err:
                payload = {"error": str(err)}
        data = json.dumps(payload).encode() if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64)
        dist.broadcast(size, 0)
        buf = (
            torch.frombuffer(bytearray(data), dtype=torch.uint8)
            if self.is_main
            else torch.empty(int(size), dtype=torch.uint8)
        )
        dist.broadcast(buf, 0)
        payload = json.loads(buf.numpy().tobytes().decode())
        if "error" in payload:
            raise UserError(payload["error"])
        return payload["value"]

    def gather_json(self, value: object) -> list:
        """Every rank's JSON value, in rank order, on every rank."""
        if self.ranks.world_size == 1:
            return [value]
        import torch.distributed as dist

        data = json.dumps(value).encode()
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.ranks.world_size)]
        dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64))
        longest = int(max(s.item() for s in sizes))
        mine = torch.zeros(longest, dtype=torch.uint8)
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else mine[:0]
        bufs = [torch.zeros(longest, dtype=torch.uint8) for _ in sizes]
        dist.all_gather(bufs, mine)
        return [json.loads(b[: int(s.item())].numpy().tobytes().decode()) for b, s in zip(bufs, sizes, strict=True)]

    # -- the restore command's three steps ---------------------------------------------------------------------

    def share_plan(self, make_plan: Callable[[], Plan]) -> Plan:
        """The run's plan, made once on rank 0 before anything is written, identical on every rank."""
        if self.ranks.world_size == 1:
            return make_plan()
        return plan_from_json(self.broadcast_json(lambda: plan_to_json(make_plan())))

    def shard(self, plan: Plan) -> Plan:
        return shard(plan, self.ranks)

    def merge(self, plan: Plan, mine: Plan, summary: RunSummary | None) -> RunSummary | None:
        """This rank's summary (None if it had nothing to do) -> the merged summary of all ranks."""
        if self.ranks.world_size == 1:
            return summary
        if not plan.todo:
            return None  # nothing ran anywhere: as in one process
        local = summary if summary is not None else RunSummary(failed=mine.failed)
        parts = [summary_from_json(d) for d in self.gather_json(summary_to_json(local))]
        return merge_summaries(plan, parts)
