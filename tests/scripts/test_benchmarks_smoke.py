"""Smoke test of the benchmark scripts (scripts/bench_crud.py, scripts/bench_search.py).

They run for a very short time against the app served over HTTP (``live_server``, backed by the
session's real database server). Only that they complete without errors and return numbers is
checked: no timing assertion (the figures depend on the machine).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # bench_search imports bench_crud by this name
    spec.loader.exec_module(module)
    return module


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


@pytest.mark.timeout(120)
def test_bench_crud_runs(live_server, tmp_path):
    bench_crud = _load("bench_crud")
    out = tmp_path / "crud.json"
    result = bench_crud.main(
        [
            "--base",
            live_server,
            "--clients",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "2",
            "--tx-iterations",
            "1",
            "--tx-size",
            "5",
            "--backend-label",
            "pytest live_server",
            "--json",
            str(out),
            "--no-rich",
        ]
    )
    assert result["errors_total"] == 0, result["phases"]
    assert set(result["phases"]) == {"create", "read", "transaction"}
    for phase in result["phases"].values():
        assert phase["ops"] >= 1
        assert phase["errors"] == 0 and phase["exceptions"] == 0
        for key in ("ops_per_s", "p50_ms", "p95_ms", "p99_ms"):
            assert _is_number(phase[key]), (phase["name"], key, phase[key])
    assert result["machine"]["nproc"] >= 1
    assert out.is_file()


@pytest.mark.timeout(120)
def test_bench_search_runs(live_server, tmp_path):
    bench_search = _load("bench_search")
    out = tmp_path / "search.json"
    result = bench_search.main(
        [
            "--base",
            live_server,
            "--patients",
            "3",
            "--clients",
            "2",
            "--iterations",
            "4",
            "--warmup",
            "1",
            "--json",
            str(out),
            "--no-rich",
        ]
    )
    assert result["errors_total"] == 0
    assert result["mismatches_total"] == 0, {n: q["extra"] for n, q in result["queries"].items()}
    assert result["resources"]["total"] > 0
    assert {"patient_by_ins", "docref_patient_type", "docref_chain_ins"} <= set(result["queries"])
    for query in result["queries"].values():
        assert query["ops"] == 4 and query["errors"] == 0
        assert _is_number(query["p50_ms"]) and _is_number(query["p99_ms"]) and query["ops_per_s"] > 0
    # The growth table reads the JSON results back.
    table = bench_search.main(["--compare", str(out), str(out)])["markdown"]
    assert "patient_by_ins" in table and "1.0x" in table


@pytest.mark.timeout(120)
def test_bench_iti65_runs(live_server, tmp_path):
    bench_iti65 = _load("bench_iti65")
    result = bench_iti65.main(["--base", live_server, "--documents", "6", "--per-bundle", "3", "--clients", "2",
                               "--patients", "2", "--size-kb", "20", "--reads", "3",
                               "--json", str(tmp_path / "iti65.json")])
    assert result["errors"] == 0, result["first_error"]
    assert result["documents"] == 6 and result["complete"]
    assert result["reads"] == 3 and result["read_errors"] == 0  # found, retrieved, SHA-1 as declared
    for key in ("documents_per_s", "mb_per_s", "bundle_p50_ms", "bundle_p99_ms", "documents_per_s_first_tenth",
                "documents_per_s_last_tenth", "iti67_p50_ms", "iti68_p95_ms"):
        assert _is_number(result[key]), key
