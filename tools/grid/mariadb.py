"""MariaDB on the grid's internal address with its own data directory; creates the database and the pushgrid user."""

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
            f"--bind-address={run.internal_host}",
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


def client_hosts(internal_host: str) -> list[str]:
    """Where the pushgrid user may log in from: loopback, and on a private address the /24
    around it, where the node hosts are."""
    if internal_host.startswith("127."):
        return [internal_host]
    return [internal_host.rsplit(".", 1)[0] + ".%"]


def _ensure_database(run: RunDir) -> None:
    password = run.secrets["mysql"]
    conn = _root(run)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS pushgrid CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            for client in client_hosts(run.internal_host):
                cur.execute("CREATE USER IF NOT EXISTS 'pushgrid'@%s IDENTIFIED BY %s", (client, password))
                cur.execute("ALTER USER 'pushgrid'@%s IDENTIFIED BY %s", (client, password))
                cur.execute("GRANT ALL PRIVILEGES ON pushgrid.* TO 'pushgrid'@%s", (client,))
        conn.commit()
    finally:
        conn.close()


def stop(run: RunDir) -> bool:
    _, _, pid_file, _ = _paths(run)
    return procs.stop(pid_file, timeout=30)
