#!/usr/bin/env python3
"""Regenerate capability_statement.json from the registries that route requests.

    python scripts/generate_capability_statement.py          # write the file
    python scripts/generate_capability_statement.py --check  # exit 1 if the file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fhir_server.capability import capability_statement
from fhir_server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "capability_statement.json"
CANONICAL_BASE = "http://localhost:8080/fhir"


def render() -> str:
    statement = capability_statement(CANONICAL_BASE, Settings())
    return json.dumps(statement, ensure_ascii=False, indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print("capability_statement.json is stale: run scripts/generate_capability_statement.py", file=sys.stderr)
            return 1
        print("capability_statement.json is up to date")
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
