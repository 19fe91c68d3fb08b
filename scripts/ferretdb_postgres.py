#!/usr/bin/env python3
"""FerretDB over PostgreSQL, with the indexes MongoDB would use: the backend for load benchmarks.

The tests and CI run on FerretDB's SQLite backend (``scripts/dbserver.py``), which answers every
query, even ``{_id: ...}``, by decoding the whole collection: right answers, no indexes. Over
PostgreSQL, FerretDB 1.24 pushes top-level equality filters down to SQL (and, with
``--test-enable-nested-pushdown``, dotted paths such as ``ix.tk``) as ``_jsonb->'k' @> value``.
The btree indexes FerretDB builds for ``createIndexes`` cannot answer ``@>``, so this script adds
GIN (``jsonb_path_ops``) indexes on the fields the server's MongoDB indexes lead with (``_id``,
``rt``, ``comp``, ``key``, ``ix.tk``, ``ix.rf``), to every collection, as collections appear.
``plan_cache_mode=force_custom_plan`` stops PostgreSQL from reusing a generic sequential-scan
plan for FerretDB's prepared statements.

Still scans here: ``$in``, ``$ne``, ranges and ``$or`` (never pushed down), so this is closer to
MongoDB, not equal to it. Only for benchmarks: nested pushdown misses matches when a dotted path
crosses an array of sub-documents; the server's dotted filters all go into ``ix``, a
sub-document, but the test suite runs on the SQLite backend, not here.

Durability: ``synchronous_commit=off`` acknowledges a write before its WAL flush, as MongoDB's
default write concern acknowledges before its journal flush; fsync stays on.

Usage (needs the PostgreSQL server: ``apt-get install -y postgresql``)::

    python scripts/ferretdb_postgres.py [--port 27060] [--data-dir DIR]

prints ``MONGODB_URI=...`` and runs until Ctrl-C or SIGTERM, then stops FerretDB and PostgreSQL.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dbserver  # noqa: E402  (FerretDB build cache, free ports)

GIN_FIELDS = {"_id": "_jsonb->'_id'", "rt": "_jsonb->'rt'", "comp": "_jsonb->'comp'", "key": "_jsonb->'key'",
              "ix_tk": "_jsonb#>'{ix,tk}'", "ix_rf": "_jsonb#>'{ix,rf}'"}
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "public", "pg_toast")


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        sys.exit(f"no PostgreSQL server ({name}): install it with `apt-get install -y postgresql`")
    return found[-1]


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


class Stack:
    def __init__(self, data_dir: Path, port: int):
        self.run_dir = Path(tempfile.mkdtemp(prefix="dmp-pg-ferretdb-"))
        self.data_dir = data_dir
        self.pg_port = dbserver._free_port()
        self.port = port
        self.ferretdb: subprocess.Popen | None = None
        self._stop = threading.Event()

    def psql(self, sql: str) -> str:
        out = _as_postgres([_postgres_bin("psql"), "-h", str(self.run_dir), "-p", str(self.pg_port), "-U", "postgres",
                            "-d", "ferretdb", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        return out.stdout

    def start(self) -> None:
        if os.geteuid() == 0:
            for path in (self.run_dir, self.data_dir):
                shutil.chown(path, "postgres", "postgres")
        if not (self.data_dir / "PG_VERSION").exists():
            _as_postgres([_postgres_bin("initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C.UTF-8"])
        settings = (f"-p {self.pg_port} -k {self.run_dir} -c listen_addresses=127.0.0.1 "
                    "-c plan_cache_mode=force_custom_plan -c synchronous_commit=off")
        _as_postgres([_postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.run_dir / "postgres.log"),
                      "-w", "-o", settings, "start"])
        created = subprocess.run(
            (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
            + [_postgres_bin("createdb"), "-h", str(self.run_dir), "-p", str(self.pg_port), "-U", "postgres", "ferretdb"],
            capture_output=True, text=True)
        if created.returncode and "already exists" not in created.stderr:
            raise RuntimeError(created.stderr)
        binary = dbserver.ensure_ferretdb()
        log = open(self.run_dir / "ferretdb.log", "ab")
        self.ferretdb = subprocess.Popen(
            [binary, "--handler=postgresql", f"--postgresql-url=postgres://postgres@127.0.0.1:{self.pg_port}/ferretdb",
             "--test-enable-nested-pushdown", f"--listen-addr=127.0.0.1:{self.port}", "--debug-addr=-",
             "--telemetry=disable", f"--state-dir={self.run_dir}", "--log-level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DO_NOT_TRACK": "1"})
        deadline = time.monotonic() + 30
        while dbserver._port_free(self.port):
            if self.ferretdb.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"FerretDB did not start; see {self.run_dir / 'ferretdb.log'}")
            time.sleep(0.2)
        threading.Thread(target=self._index_new_collections, daemon=True).start()

    def _index_new_collections(self) -> None:
        """Every 2 s: GIN indexes on the tables of collections created since (idempotent)."""
        done: set[str] = set()
        while not self._stop.wait(2):
            try:
                for table in self._tables() - done:
                    for name, expression in GIN_FIELDS.items():
                        index = f"{table.split('.')[1].strip(chr(34))[:50]}_gin_{name}"
                        self.psql(f'CREATE INDEX IF NOT EXISTS "{index}" ON {table} USING gin (({expression}) jsonb_path_ops)')
                    done.add(table)
            except (subprocess.CalledProcessError, RuntimeError) as err:
                print(f"[ferretdb-postgres] indexing: {getattr(err, 'stderr', err)}", file=sys.stderr)

    def _tables(self) -> set[str]:
        schemas = [s for s in self.psql("SELECT nspname FROM pg_namespace").split()
                   if s not in SYSTEM_SCHEMAS and not s.startswith("pg_")]
        tables = set()
        for schema in schemas:
            rows = self.psql(f"SELECT _jsonb->>'table' FROM \"{schema}\"._ferretdb_database_metadata")
            tables.update(f'"{schema}"."{t}"' for t in rows.split())
        return tables

    def stop(self) -> None:
        self._stop.set()
        if self.ferretdb and self.ferretdb.poll() is None:
            self.ferretdb.terminate()
            self.ferretdb.wait(10)
        subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
                       + [_postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=27060)
    parser.add_argument("--data-dir", type=Path, help="PostgreSQL data directory (default: a temporary one)")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve() if args.data_dir else Path(tempfile.mkdtemp(prefix="dmp-pg-data-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        print(f"MONGODB_URI=mongodb://127.0.0.1:{args.port}/", flush=True)
        print(f"[ferretdb-postgres] PostgreSQL data in {data_dir}; Ctrl-C or SIGTERM to stop", flush=True)
        while stack.ferretdb.poll() is None:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
