#!/usr/bin/env python3
"""Start a real MongoDB-wire-protocol server for tests and CI.

Uses ``mongod`` when it is on PATH (as a single-node replica set, so
transactions work); otherwise FerretDB v1.24.2 with its SQLite backend,
built once from the Go module proxy and cached.

Library use::

    from dbserver import start_server
    with start_server() as srv:          # temp data dir, free loopback port
        client = pymongo.MongoClient(srv.uri)
        ...

CLI::

    python scripts/dbserver.py build                 # build/cache FerretDB, print its path
    python scripts/dbserver.py which                 # what `start` would run
    python scripts/dbserver.py start [--port P] [--data-dir D]

Environment:
    DMP_CACHE_DIR       cache dir for the FerretDB binary
                        (default ~/.cache/dmp-fhir/ferretdb-v1.24.2/)
    DMP_DB_SERVER       "auto" (default), "mongod" or "ferretdb": force a kind
    DMP_FERRETDB_BIN    use this ferretdb binary instead of building one

Note on the build: a plain ``go install github.com/FerretDB/FerretDB/cmd/
ferretdb@v1.24.2`` produces a binary that panics at start-up ("Invalid
build/version/version.txt file content"), because the module zip lacks the
generated version.txt.  So we fetch the module with ``go mod download``, copy
it, write ``build/version/version.txt`` and ``go build`` it from there.

Standard library only, plus ``pymongo`` for the readiness ping.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FERRETDB_VERSION = "v1.24.2"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_PKG = "./cmd/ferretdb"
DEFAULT_TIMEOUT = 30.0
REPLSET_NAME = "rs0"

__all__ = [
    "DBServerError",
    "ServerHandle",
    "cache_dir",
    "ensure_ferretdb",
    "find_ferretdb",
    "find_mongod",
    "start_server",
]


class DBServerError(RuntimeError):
    """Raised when a server binary cannot be found/built or fails to start."""


def _log(msg: str) -> None:
    print(f"[dbserver] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# locating / building binaries
# --------------------------------------------------------------------------

def cache_dir() -> Path:
    env = os.environ.get("DMP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dmp-fhir" / f"ferretdb-{FERRETDB_VERSION}"


def find_mongod() -> str | None:
    """Path of ``mongod`` on PATH, or None."""
    return shutil.which("mongod")


def _find_go() -> str | None:
    go = shutil.which("go")
    if go:
        return go
    for cand in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if os.access(cand, os.X_OK):
            return cand
    return None


def _ferretdb_ok(path: str | os.PathLike) -> bool:
    """True if ``path --version`` runs and reports the expected version."""
    try:
        r = subprocess.run([str(path), "--version"], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and f"version: {FERRETDB_VERSION}" in r.stdout


def find_ferretdb() -> str | None:
    """Path of an already usable ferretdb binary (override or cache), or None."""
    env = os.environ.get("DMP_FERRETDB_BIN")
    if env:
        return env if _ferretdb_ok(env) else None
    b = cache_dir() / "ferretdb"
    return str(b) if b.is_file() and _ferretdb_ok(b) else None


def _run_step(cmd: list[str], *, cwd: str | None, env: dict[str, str],
              what: str, timeout: float = 1800) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or "") + (e.stderr or "")
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        raise DBServerError(f"{what} timed out after {timeout:.0f}s\n"
                            f"command: {' '.join(cmd)} (cwd={cwd})\n"
                            f"output:\n{out}") from None
    except OSError as e:
        raise DBServerError(f"{what} could not run: {e}\n"
                            f"command: {' '.join(cmd)} (cwd={cwd})") from None
    if r.returncode != 0:
        raise DBServerError(f"{what} failed (exit {r.returncode})\n"
                            f"command: {' '.join(cmd)} (cwd={cwd})\n"
                            f"output:\n{r.stdout}{r.stderr}")
    return r.stdout


def ensure_ferretdb(cache: str | os.PathLike | None = None) -> str:
    """Return the path of a working ferretdb v1.24.2 binary, building it once.

    The binary is cached as ``<cache>/ferretdb``.  Concurrent callers (e.g.
    parallel test workers) serialize on a lock file, so only one builds.
    """
    if cache is None:
        env = os.environ.get("DMP_FERRETDB_BIN")
        if env:
            if _ferretdb_ok(env):
                return env
            raise DBServerError(f"DMP_FERRETDB_BIN={env} is not a working "
                                f"ferretdb {FERRETDB_VERSION} binary "
                                f"(`{env} --version` failed or differs)")
    cdir = Path(cache) if cache is not None else cache_dir()
    binary = cdir / "ferretdb"
    if binary.is_file() and _ferretdb_ok(binary):
        return str(binary)

    cdir.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX only; imported here so `which` works anywhere

    with open(cdir / ".build.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        try:
            if binary.is_file() and _ferretdb_ok(binary):
                return str(binary)  # another process built it meanwhile
            _build_ferretdb(cdir, binary)
        finally:
            fcntl.flock(lockf, fcntl.LOCK_UN)
    return str(binary)


def _build_ferretdb(cdir: Path, binary: Path) -> None:
    go = _find_go()
    mod = f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"
    if go is None:
        raise DBServerError(
            "neither `mongod` nor `go` found on PATH; cannot provide a MongoDB "
            "server. Install Go (>= 1.24 or with GOTOOLCHAIN=auto) so that "
            f"FerretDB can be built: the equivalent of "
            f"`go mod download {mod}` + `go build {FERRETDB_PKG}` "
            f"(see {__file__}), or install mongod.")

    t0 = time.monotonic()
    _log(f"building FerretDB {FERRETDB_VERSION} with Go "
         f"(first run only, ~3 min) into {cdir} ...")
    env = dict(os.environ)
    env.update({
        "GO111MODULE": "on",
        "GOWORK": "off",
        "GOFLAGS": "",          # ignore e.g. -mod=vendor from the caller
        "CGO_ENABLED": "0",     # FerretDB's sqlite is pure Go (modernc)
    })
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cdir))
    try:
        _log(f"  go mod download {mod}")
        out = _run_step([go, "mod", "download", "-json", mod], cwd=str(work),
                        env=env, what="downloading the FerretDB module")
        try:
            moddir = json.loads(out)["Dir"]
        except (ValueError, KeyError):
            raise DBServerError(f"unexpected `go mod download -json {mod}` "
                                f"output:\n{out}") from None
        src = work / "src"
        shutil.copytree(moddir, src, symlinks=True)
        for root, dirs, files in os.walk(src):  # module cache is read-only
            for n in dirs + files:
                p = os.path.join(root, n)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)
            os.chmod(root, os.stat(root).st_mode | stat.S_IWUSR)
        # the generated file missing from the module zip (see module doc)
        (src / "build" / "version" / "version.txt").write_text(
            FERRETDB_VERSION + "\n")
        tmpbin = work / "ferretdb"
        cmd = [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmpbin),
               FERRETDB_PKG]
        _log(f"  {' '.join(cmd)}  (in the module copy; compiling, be patient)")
        _run_step(cmd, cwd=str(src), env=env, what="building FerretDB")
        if not _ferretdb_ok(tmpbin):
            r = subprocess.run([str(tmpbin), "--version"], capture_output=True,
                               text=True)
            raise DBServerError("built ferretdb does not run: "
                                f"`{tmpbin} --version` gave exit "
                                f"{r.returncode}\n{r.stdout}{r.stderr}")
        os.replace(tmpbin, binary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log(f"built {binary} in {time.monotonic() - t0:.0f}s")


# --------------------------------------------------------------------------
# running a server
# --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:]) or "(empty log)"


def _preexec_pdeathsig():  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the server if the parent dies (best effort)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_live: "set[ServerHandle]" = set()   # running handles, stopped at exit


@atexit.register
def _stop_all() -> None:
    for h in list(_live):
        try:
            h.stop()
        except Exception:
            pass


class ServerHandle:
    """A running server. ``uri``, ``kind``, ``process``, ``port``, ``data_dir``,
    ``log_path``; ``stop()``; usable as a context manager."""

    def __init__(self, *, kind: str, process: subprocess.Popen, port: int,
                 data_dir: Path, run_dir: Path, log_path: Path, log_file):
        self.kind = kind
        self.process = process
        self.port = port
        self.host = "127.0.0.1"
        self.uri = f"mongodb://127.0.0.1:{port}/"
        self.data_dir = data_dir
        self.run_dir = run_dir          # always ours; removed by stop()
        self.log_path = log_path
        self._log_file = log_file
        self._stopped = False
        self._lock = threading.Lock()
        _live.add(self)

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"pid={self.process.pid}"
        return f"<ServerHandle {self.kind} {self.uri} {state}>"

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 40) -> str:
        return _tail(self.log_path, n)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (then kill), wait, and remove the temp dirs we created."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        p = self.process
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            except ProcessLookupError:
                pass
        try:
            self._log_file.close()
        except Exception:
            pass
        shutil.rmtree(self.run_dir, ignore_errors=True)
        _live.discard(self)


def _ping(uri: str, timeout_ms: int = 1000):
    import pymongo  # imported lazily so `build`/`which` work without it

    client = pymongo.MongoClient(uri, directConnection=True,
                                 serverSelectionTimeoutMS=timeout_ms,
                                 connectTimeoutMS=timeout_ms,
                                 socketTimeoutMS=max(timeout_ms, 5000))
    try:
        client.admin.command("ping")
        return client
    except Exception:
        client.close()
        raise


def _wait_ready(handle: ServerHandle, deadline: float) -> None:
    last = None
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise DBServerError(
                f"{handle.kind} exited with code {handle.process.returncode} "
                f"before becoming ready; log tail:\n{handle.log_tail()}")
        try:
            client = _ping(handle.uri)
        except Exception as e:  # not up yet
            last = e
            time.sleep(0.1)
            continue
        try:
            # make sure we reached *our* process, not another server that
            # already listens on this port
            pid = client.admin.command("serverStatus").get("pid")
        except Exception:
            pid = None
        finally:
            client.close()
        if pid is not None and int(pid) != handle.process.pid:
            raise DBServerError(
                f"port {handle.port} is already served by another process "
                f"(pid {pid}); pick another port")
        return
    raise DBServerError(f"{handle.kind} on {handle.uri} not ready in time "
                        f"(last error: {last}); log tail:\n{handle.log_tail()}")


def _init_replset(handle: ServerHandle, deadline: float) -> None:
    """replSetInitiate a single-node set and wait until it is primary."""
    from pymongo.errors import OperationFailure

    client = _ping(handle.uri)
    try:
        try:
            client.admin.command("replSetInitiate", {
                "_id": REPLSET_NAME,
                "members": [{"_id": 0, "host": f"127.0.0.1:{handle.port}"}],
            })
        except OperationFailure as e:
            # 23 = AlreadyInitialized (reused data dir)
            if e.code != 23 and "already initialized" not in str(e):
                raise
        while time.monotonic() < deadline:
            if client.admin.command("hello").get("isWritablePrimary"):
                return
            time.sleep(0.2)
        raise DBServerError("mongod replica set did not elect a primary in "
                            f"time; log tail:\n{handle.log_tail()}")
    finally:
        client.close()


def _resolve_kind(kind: str | None) -> str:
    kind = (kind or os.environ.get("DMP_DB_SERVER") or "auto").lower()
    if kind == "auto":
        return "mongod" if find_mongod() else "ferretdb"
    if kind not in ("mongod", "ferretdb"):
        raise DBServerError(f"unknown server kind {kind!r} "
                            "(use auto, mongod or ferretdb)")
    if kind == "mongod" and not find_mongod():
        raise DBServerError("DMP_DB_SERVER/kind=mongod but no mongod on PATH")
    return kind


def start_server(data_dir: str | os.PathLike | None = None,
                 port: int | None = None, *, kind: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> ServerHandle:
    """Start mongod (if on PATH) or FerretDB/SQLite; return when it answers ping.

    data_dir: where the data lives; kept on stop() if given, otherwise a temp
    dir that stop() removes.  port: defaults to a free loopback port.
    """
    kind = _resolve_kind(kind)
    binary = find_mongod() if kind == "mongod" else ensure_ferretdb()
    assert binary
    if port is not None and not _port_free(port):
        raise DBServerError(f"port {port} on 127.0.0.1 is already in use")
    attempts = 1 if port is not None else 3   # retry races on picked ports
    err: DBServerError | None = None
    for _ in range(attempts):
        try:
            return _start_once(kind, binary, data_dir,
                               port if port is not None else _free_port(),
                               timeout)
        except DBServerError as e:
            err = e
            msg = str(e).lower()
            if ("address already in use" not in msg
                    and "already served by another" not in msg):
                raise
    assert err is not None
    raise err


def _start_once(kind: str, binary: str, data_dir, port: int,
                timeout: float) -> ServerHandle:
    run_dir = Path(tempfile.mkdtemp(prefix=f"dmp-{kind}-"))
    if data_dir is None:
        ddir = run_dir / "data"
    else:
        ddir = Path(data_dir).resolve()
    ddir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"{kind}.log"

    if kind == "mongod":
        cmd = [binary, "--dbpath", str(ddir), "--port", str(port),
               "--bind_ip", "127.0.0.1", "--quiet", "--replSet", REPLSET_NAME]
    else:
        cmd = [binary,
               "--handler=sqlite",
               f"--sqlite-url=file:{ddir}/",
               f"--listen-addr=127.0.0.1:{port}",
               "--debug-addr=-",
               "--telemetry=disable",
               f"--state-dir={ddir}",
               "--log-level=warn"]
    env = dict(os.environ)
    env["DO_NOT_TRACK"] = "1"
    for k in list(env):          # no stray FERRETDB_* settings from outside
        if k.startswith("FERRETDB_"):
            del env[k]

    log_file = open(log_path, "ab")
    main_thread = threading.current_thread() is threading.main_thread()
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, env=env, cwd=str(run_dir),
            start_new_session=True,
            # PDEATHSIG fires when the *thread* that forked dies: only safe
            # from the main thread.
            preexec_fn=_preexec_pdeathsig if (main_thread and
                                              sys.platform == "linux") else None,
        )
    except OSError as e:
        log_file.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise DBServerError(f"could not start {' '.join(cmd)}: {e}") from None

    handle = ServerHandle(kind=kind, process=proc, port=port, data_dir=ddir,
                          run_dir=run_dir, log_path=log_path,
                          log_file=log_file)
    deadline = time.monotonic() + timeout
    try:
        _wait_ready(handle, deadline)
        if kind == "mongod":
            _init_replset(handle, deadline)
    except BaseException as e:
        tail = handle.log_tail()
        handle.stop()
        if isinstance(e, DBServerError):
            raise
        if isinstance(e, Exception):
            raise DBServerError(f"{kind} failed to start: {e}\n"
                                f"command: {' '.join(cmd)}\n"
                                f"log tail:\n{tail}") from e
        raise
    return handle


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _cmd_which(_args) -> int:
    forced = os.environ.get("DMP_DB_SERVER", "auto")
    mongod = find_mongod()
    if forced != "ferretdb" and mongod:
        print(f"mongod {mongod}")
        return 0
    fb = find_ferretdb()
    if fb:
        print(f"ferretdb {fb}")
        return 0
    go = _find_go()
    target = cache_dir() / "ferretdb"
    if go:
        state = ("cached binary is not a working " + FERRETDB_VERSION
                 if target.exists() else "not built yet")
        print(f"ferretdb {target} ({state}; would build "
              f"{FERRETDB_MODULE}@{FERRETDB_VERSION} with {go})")
        return 0
    print("none: no mongod on PATH, no cached ferretdb, and no go to build it")
    return 1


def _cmd_build(_args) -> int:
    print(ensure_ferretdb())
    return 0


def _cmd_start(args) -> int:
    srv = start_server(data_dir=args.data_dir, port=args.port, kind=args.kind)
    stop_evt = threading.Event()

    def _on_signal(signum, _frame):
        stop_evt.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _on_signal)
    print(f"MONGODB_URI={srv.uri}", flush=True)
    print(f"DB_KIND={srv.kind}", flush=True)
    _log(f"{srv.kind} pid {srv.process.pid} on {srv.uri}, data in "
         f"{srv.data_dir}; Ctrl-C or SIGTERM to stop")
    rc = 0
    try:
        while not stop_evt.wait(0.5):
            if srv.process.poll() is not None:
                _log(f"{srv.kind} exited unexpectedly with code "
                     f"{srv.process.returncode}; log tail:\n{srv.log_tail()}")
                rc = 1
                break
    finally:
        srv.stop()
        _log("stopped")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="dbserver.py",
        description="Run mongod or FerretDB (SQLite) for tests and CI.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build/cache FerretDB and print its path")
    sub.add_parser("which", help="print which server `start` would use")
    sp = sub.add_parser("start", help="start a server until Ctrl-C/SIGTERM")
    sp.add_argument("--port", type=int, default=None)
    sp.add_argument("--data-dir", default=None,
                    help="data directory (kept); default: a temp dir (removed)")
    sp.add_argument("--kind", choices=["auto", "mongod", "ferretdb"],
                    default=None, help="default: $DMP_DB_SERVER or auto")
    args = ap.parse_args(argv)
    try:
        return {"build": _cmd_build, "which": _cmd_which,
                "start": _cmd_start}[args.cmd](args)
    except DBServerError as e:
        print(f"dbserver: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
