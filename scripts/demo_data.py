#!/usr/bin/env python3
"""Generate realistic French DMP demo data, write it or load it through a server's API.

    python scripts/demo_data.py --patients 200 --seed 42 --out /tmp/demo
    python scripts/demo_data.py --patients 200 --load http://localhost:8080/fhir --concurrency 4

The generator lives in the package (fhir_server.demo_data) so that `dmp-fhir serve --demo` and
`dmp-fhir load --demo N` use the same code.
"""

import sys

from fhir_server.demo_data import main

if __name__ == "__main__":
    sys.exit(main())
