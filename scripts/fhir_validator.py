#!/usr/bin/env python3
"""The official HL7 FHIR validator (through HAPI FHIR's instance validator), run fully offline.

The Java harness lives in ``scripts/validator/`` (a Maven project, see its ``Validate.java``).
``build`` compiles it once with Maven and copies its dependencies next to it; ``validate`` then
runs it with plain ``java -cp`` so nothing can be resolved or downloaded at validation time.

CLI::

    python scripts/fhir_validator.py build            # compile once (cached: a 2nd build is instant)
    python scripts/fhir_validator.py build --force    # rebuild anyway
    python scripts/fhir_validator.py validate --ig profiles [--profile URL]... [--out report.json] FILE_OR_DIR...

``validate`` prints the JSON report (or writes it to ``--out``) and exits 0 when no file has an
error or fatal issue, 1 when one does, 2 when the harness itself failed.

Library use (tests load this file with importlib, like scripts/dbserver.py)::

    report = run_validator(["profiles"], ["out/"])   # -> dict, see Validate.java for the format
    for f in report["files"]:
        print(f["file"], f["errors"], f["issues"])

The build output goes to ``scripts/validator/target/`` (git-ignored). It is keyed on the content of
the pom and the Java sources: when they change, the next ``build`` rebuilds.

Environment:
    DMP_VALIDATOR_JAVA      java executable (default: ``java`` on PATH)
    DMP_VALIDATOR_MVN       mvn executable (default: ``mvn`` on PATH)
    DMP_VALIDATOR_JAVA_OPTS extra JVM options (space separated)

Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "scripts" / "validator"
POM = HARNESS / "pom.xml"
TARGET = HARNESS / "target"
JAR = TARGET / "dmp-fhir-validator-1.0.jar"
DEPS = TARGET / "dependency"
STAMP = TARGET / "build-stamp.json"
MAIN_CLASS = "dmp.Validate"
# Tiered compilation stopped at C1 starts the JVM and warms the validator faster than full C2 for
# runs of a few dozen files; the heap is bounded for a 2-core / shared CI machine.
DEFAULT_JVM_OPTS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx1g", "-Xss4m"]

__all__ = ["ValidatorError", "build", "classpath", "errors_of", "run_validator"]


class ValidatorError(RuntimeError):
    """The harness could not be built or did not produce a report."""


def _log(msg: str) -> None:
    print(f"[fhir_validator] {msg}", file=sys.stderr, flush=True)


def _tool(env: str, name: str) -> str:
    exe = os.environ.get(env) or shutil.which(name)
    if not exe:
        raise ValidatorError(f"{name} not found on PATH (set {env})")
    return exe


def _source_digest() -> str:
    """Hash of everything the build depends on: the pom and the harness sources."""
    h = hashlib.sha256()
    files = [POM, *sorted(p for p in (HARNESS / "src").rglob("*") if p.is_file())]
    for p in files:
        h.update(str(p.relative_to(HARNESS)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _is_built(digest: str) -> bool:
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("digest") == digest and JAR.is_file() and DEPS.is_dir() and any(DEPS.glob("*.jar"))


def build(force: bool = False) -> str:
    """Compile the harness and copy its dependencies, unless the cached build is current.

    Returns the classpath to run it with."""
    digest = _source_digest()
    if not force and _is_built(digest):
        return classpath()
    mvn = _tool("DMP_VALIDATOR_MVN", "mvn")
    _tool("DMP_VALIDATOR_JAVA", "java")
    _log("building the validator harness with Maven (the first build downloads HAPI FHIR into ~/.m2)...")
    started = time.monotonic()
    # `clean` first, so jars of a previous dependency set never linger in target/dependency.
    cmd = [mvn, "-q", "-B", "-f", str(POM), "clean", "package",
           "dependency:copy-dependencies", "-DincludeScope=runtime"]
    proc = subprocess.run(cmd, cwd=HARNESS, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ValidatorError(
            f"maven build failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    if not JAR.is_file():
        raise ValidatorError(f"maven build produced no {JAR}")
    STAMP.write_text(json.dumps({"digest": digest, "built": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    _log(f"built in {time.monotonic() - started:.1f}s: {JAR.relative_to(ROOT)}")
    return classpath()


def classpath() -> str:
    if not JAR.is_file() or not DEPS.is_dir():
        raise ValidatorError("validator harness not built: run `python scripts/fhir_validator.py build`")
    return os.pathsep.join([str(JAR), str(DEPS / "*")])


def _java_cmd(args: list[str]) -> list[str]:
    java = _tool("DMP_VALIDATOR_JAVA", "java")
    extra = shlex.split(os.environ.get("DMP_VALIDATOR_JAVA_OPTS", ""))
    return [java, *DEFAULT_JVM_OPTS, *extra, "-cp", classpath(), MAIN_CLASS, *args]


def run_validator(ig_dirs, paths, profiles=(), *, build_if_needed: bool = True, timeout: float = 900) -> dict:
    """Validate JSON files (or directories of them) in one JVM run; return the parsed report.

    ig_dirs: directories (or files) of StructureDefinition/ValueSet/CodeSystem JSON to load.
    paths: JSON files or directories to validate.
    profiles: StructureDefinition URLs (from ig_dirs) to validate every resource of their type against,
              in addition to the base definition and meta.profile.
    The report's "exitCode" is the harness's: 0 no errors, 1 some file has an error or fatal issue."""
    if build_if_needed:
        build()
    args: list[str] = ["--no-fail"]
    for ig in ig_dirs:
        args += ["--ig", str(ig)]
    for url in profiles:
        args += ["--profile", url]
    with tempfile.TemporaryDirectory(prefix="fhir-validator-") as tmp:
        out = Path(tmp) / "report.json"
        args += ["--out", str(out), *(str(p) for p in paths)]
        proc = subprocess.run(_java_cmd(args), capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0 or not out.is_file():
            raise ValidatorError(f"validator failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
        report = json.loads(out.read_text(encoding="utf-8"))
    report["exitCode"] = 1 if report["summary"]["errors"] else 0
    report["stderr"] = proc.stderr
    return report


def errors_of(file_report: dict) -> list[dict]:
    """The error and fatal issues of one file's entry in a report."""
    return [i for i in file_report["issues"] if i["severity"] in ("error", "fatal")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile the harness once (cached)")
    b.add_argument("--force", action="store_true", help="rebuild even if the cached build is current")
    v = sub.add_parser("validate", help="validate JSON files or directories")
    v.add_argument("--ig", action="append", default=[], help="directory of conformance resources (repeatable)")
    v.add_argument("--profile", action="append", default=[], help="StructureDefinition URL to validate against")
    v.add_argument("--out", help="write the JSON report here instead of stdout")
    v.add_argument("--no-build", action="store_true", help="fail instead of building when not built")
    v.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            started = time.monotonic()
            cp = build(force=args.force)
            _log(f"ready ({time.monotonic() - started:.1f}s)")
            print(cp)
            return 0
        if not args.no_build:
            build()
        jargs: list[str] = []
        for ig in args.ig:
            jargs += ["--ig", ig]
        for url in args.profile:
            jargs += ["--profile", url]
        if args.out:
            jargs += ["--out", args.out]
        return subprocess.run(_java_cmd([*jargs, *args.paths]), check=False).returncode
    except ValidatorError as exc:
        _log(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
