"""Write the settings tables of docs/settings.md from their declaration (prefrestore.restore.options).

    python tools/settings_tables.py          # rewrite the tables between the page's settings-table markers
    python tools/settings_tables.py --check  # exit 1 when the page differs from the declaration

Each ``<!-- settings-table: GROUP -->`` ... ``<!-- /settings-table -->`` block holds ``settings_table(GROUP)``;
tests/test_settings.py checks that the page matches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefrestore.restore.options import render_settings_tables

PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def render(page: str) -> str:
    try:
        return render_settings_tables(page)
    except ValueError as err:
        raise SystemExit(str(err)) from None


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
