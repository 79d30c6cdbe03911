"""A throw-away PostgreSQL server for tests: initdb in a temp folder, loopback port, password auth.

PostgreSQL refuses to run as root, so when the tests run as root the server
runs as the ``postgres`` system user (the Debian package creates it). When the
server binaries are missing the caller skips, unless MALLSCORE_REQUIRE_POSTGRES=1
(CI), where a missing server is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "PostgreSQL server binaries not found; install them (Debian/Ubuntu: apt-get install postgresql)"
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "su-Pw-4-tests"
APP_USER = "mallscore_app"
APP_PASSWORD = "s3cret-Pw!x:z@q"  # awkward characters on purpose: ':' '@' '!' must survive URL quoting
DATABASE = "mallscore_test"


def find_bin_dir() -> Path | None:
    """The folder holding initdb/pg_ctl: $MALLSCORE_PG_BIN (only there when set), PATH, or /usr/lib/postgresql/*/bin."""
    candidates = []
    if os.environ.get("MALLSCORE_PG_BIN"):
        folder = Path(os.environ["MALLSCORE_PG_BIN"])
        return folder if all((folder / b).exists() for b in ("initdb", "pg_ctl", "postgres")) else None
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running server and the URLs tests use to reach it."""

    bin_dir: Path
    root: Path
    port: int
    uid: int | None
    gid: int | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(
        self,
        user: str = APP_USER,
        password: str | None = APP_PASSWORD,
        database: str = DATABASE,
        driver: str = "postgresql",
    ) -> str:
        """A SQLAlchemy URL for ``user`` (password URL-quoted; None leaves it out)."""
        from sqlalchemy.engine import URL

        return URL.create(
            driver, username=user, password=password, host="127.0.0.1", port=self.port, database=database
        ).render_as_string(hide_password=False)

    def dsn(self, user: str = SUPERUSER, password: str = SUPERUSER_PASSWORD, database: str = DATABASE) -> str:
        """A libpq connection string for psycopg."""
        return f"host=127.0.0.1 port={self.port} user={user} password={password} dbname={database}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a server binary as the server's user."""
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=self.uid,
            group=self.gid,
            extra_groups=[] if self.uid is not None else None,
            capture_output=True,
            text=True,
            check=check,
            cwd=self.root,
        )

    def start(self) -> None:
        """initdb (password auth on TCP, trust only on the private socket) and start."""
        pwfile = self.root / "pw"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        self._own(pwfile)
        self.run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
            "--no-sync",
        )
        pwfile.unlink()
        for attempt in range(5):
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB"
            )
            proc = self.run(
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
                check=False,
            )
            if proc.returncode == 0:
                break
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            if "could not bind" in log and attempt < 4:
                self.port = _free_port()
                continue
            raise RuntimeError(f"pg_ctl start failed: {proc.stderr}\n{log[-2000:]}")
        self._bootstrap()

    def _own(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)

    def _bootstrap(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn(database="postgres"), autocommit=True) as con:
            con.execute(f"create role {APP_USER} login password '{APP_PASSWORD}'")
            con.execute("create role mallscore_reader login password 'reader-pw'")
            con.execute(f"create database {DATABASE} owner {APP_USER}")
        with psycopg.connect(self.dsn(), autocommit=True) as con:
            con.execute("revoke create on schema public from public")
            con.execute(f"grant create, usage on schema public to {APP_USER}")
            con.execute("grant usage on schema public to mallscore_reader")
            # a schema the app user may read but not write: for permission errors
            con.execute("create schema locked")
            con.execute(f"grant usage on schema locked to {APP_USER}")

    def stop(self) -> None:
        """Fast shutdown, then remove the folder."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self.run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PgServer:
    """Start a fresh server or raise LookupError (binaries or a non-root user missing)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise LookupError(INSTALL_HINT)
    uid = gid = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise LookupError(
                "running as root and no 'postgres' system user to run the server as "
                "(apt-get install postgresql creates it)"
            ) from None
        uid, gid = user.pw_uid, user.pw_gid
    root = Path(tempfile.mkdtemp(prefix="mallscore-pg-"))
    os.chmod(root, 0o700)
    if uid is not None:
        os.chown(root, uid, gid)
    server = PgServer(bin_dir, root, _free_port(), uid, gid)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
