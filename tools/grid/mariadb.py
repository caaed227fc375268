"""MariaDB on loopback with its own data directory; creates the database and the pushgrid user."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess

import pymysql

from tools.grid import procs
from tools.grid.rundir import RunDir


def _paths(run: RunDir) -> tuple[str, str, str, str]:
    base = run.dir("mysql")
    return (
        os.path.join(base, "data"),
        os.path.join(base, "mysqld.sock"),
        os.path.join(base, "mysqld.pid"),
        os.path.join(base, "mysqld.log"),
    )


def start(run: RunDir) -> None:
    datadir, sock, pid_file, log = _paths(run)
    if not os.path.isdir(os.path.join(datadir, "mysql")):
        shutil.rmtree(datadir, ignore_errors=True)
        user = getpass.getuser()
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                f"--user={user}",
                "--auth-root-authentication-method=socket",
                f"--auth-root-socket-user={user}",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),
        )
    procs.start(
        [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--port={run.ports['mysql']}",
            "--bind-address=127.0.0.1",
            f"--pid-file={os.path.join(datadir, 'mariadbd.pid')}",
            f"--user={getpass.getuser()}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500",
            "--skip-log-bin",
        ],
        pid_file,
        log,
    )
    procs.wait_for(lambda: _root(run).close() is None, "MariaDB", 60, log, pid_file)
    _ensure_database(run)


def _root(run: RunDir) -> pymysql.Connection:
    _, sock, _, _ = _paths(run)
    return pymysql.connect(unix_socket=sock, user="root", connect_timeout=2)


def _ensure_database(run: RunDir) -> None:
    password = run.secrets["mysql"]
    conn = _root(run)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS pushgrid CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.execute("CREATE USER IF NOT EXISTS 'pushgrid'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute("ALTER USER 'pushgrid'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute("GRANT ALL PRIVILEGES ON pushgrid.* TO 'pushgrid'@'127.0.0.1'")
        conn.commit()
    finally:
        conn.close()


def stop(run: RunDir) -> bool:
    _, _, pid_file, _ = _paths(run)
    return procs.stop(pid_file, timeout=30)
