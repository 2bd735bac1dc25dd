"""Write the settings tables of docs/settings.md from their declaration (prefrestore.restore.options).

    python tools/settings_tables.py          # rewrite the tables between the page's settings-table markers
    python tools/settings_tables.py --check  # exit 1 when the page differs from the declaration

Each ``<!-- settings-table: GROUP -->`` ... ``<!-- /settings-table -->`` block holds ``settings_table(GROUP)``;
tests/test_settings.py checks that the page matches.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from prefrestore.restore.options import GROUPS, settings_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
BLOCK = re.compile(r"(<!-- settings-table: (\w+) -->\n).*?(<!-- /settings-table -->)", re.S)


def render(page: str) -> str:
    """``page`` with every marked block holding its group's table (an unknown group is an error)."""

    def table(m: re.Match) -> str:
        if m[2] not in GROUPS:
            raise SystemExit(f"docs/settings.md: unknown settings group {m[2]!r}; groups: {', '.join(GROUPS)}")
        return f"{m[1]}{settings_table(m[2])}\n{m[3]}"

    return BLOCK.sub(table, page)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the page is not what the declaration gives")
    args = p.parse_args()
    page = PAGE.read_text()
    new = render(page)
    if args.check:
        if new != page:
            print("docs/settings.md differs from prefrestore.restore.options; run python tools/settings_tables.py")
            return 1
        return 0
    if new != page:
        PAGE.write_text(new)
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
