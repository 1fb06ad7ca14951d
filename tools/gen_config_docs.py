"""Write config/default.yaml and the README's configuration table from the pydantic config model.

    python tools/gen_config_docs.py          # rewrite both
    python tools/gen_config_docs.py --check  # exit 1 when either is stale (what tests/test_config.py checks)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stream.config_docs import default_yaml, readme_with_table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when a file is stale")
    args = ap.parse_args()
    targets = {REPO / "config" / "default.yaml": default_yaml(),
               REPO / "README.md": readme_with_table((REPO / "README.md").read_text())}
    stale = [p for p, text in targets.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(REPO)} is stale: run python tools/gen_config_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(targets[p])
        print(f"wrote {p.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
