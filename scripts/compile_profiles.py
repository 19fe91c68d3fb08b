#!/usr/bin/env python3
"""Compile the DMP StructureDefinitions (profiles/structuredefinitions) to JSON Schema (profiles/schemas).

Run after editing a profile; tests/fhir/test_profiles.py fails while a compiled schema is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_server.fhir.profiles import SCHEMAS_DIR, compiled_schemas  # noqa: E402


def render(schema: dict) -> str:
    return json.dumps(schema, ensure_ascii=False, indent=2) + "\n"


def main() -> int:
    schemas = compiled_schemas()
    for stale in set(SCHEMAS_DIR.glob("*.schema.json")) - set(schemas):
        stale.unlink()
        print(f"removed {stale.name}")
    for path, schema in schemas.items():
        path.write_text(render(schema), encoding="utf-8")
        print(f"wrote {path.relative_to(SCHEMAS_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
