"""Write netspec/schema/netspec.schema.json from the pydantic models (what `netspec schema` prints).

    python tools/gen_schema.py          # rewrite the committed file
    python tools/gen_schema.py --check  # exit 1 if it is out of date

Run it after changing any layer message, the envelope, the solver:/data: models or the blocks schema;
tests/test_schema.py fails until the committed file matches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "netspec" / "schema" / "netspec.schema.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the file is stale")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from netspec.schema import render

    text = render()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if args.check:
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date; run python tools/gen_schema.py")
            return 1
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
