"""`pushgrid logs`: one push followed across every server it passed through, with one grep,
read through IceGrid's admin (no host's files opened by the test)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

from tests.integration.test_delivery_e2e import A, Phones, request, run
from tests.integration.waiting import until_async as until

pytestmark = pytest.mark.integration

SERVER = re.compile(r"^\S+ \S+ \S+ (\S+) ")  # time, level, server: services.common.logs.FORMAT


def pushgrid_logs(grid, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", grid.path, "logs", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_grep_follows_a_push_through_push_dbagent_dispatcher_and_stc(grid, app, push) -> None:
    async def t(phones: Phones) -> None:
        device = await phones.new()
        rid = device.creds.registration_id
        msg = (await asyncio.to_thread(push.push, app, request(A(registrationIds=[rid]), "followed"))).msgId
        await until(lambda: push.report(app, [msg])[0].received == 1, "the device's receipt")

        def path() -> list[str]:
            out = pushgrid_logs(grid, "--grep", f"msg={msg} ")
            assert out.returncode == 0, out.stderr
            return out.stdout.splitlines()

        await until(
            lambda: all(any(w in line for line in path()) for w in (" Done", "receipts recorded")),
            "the move to Done and the receipt in the logs",
        )
        lines = await asyncio.to_thread(path)
        print("\n" + "\n".join(lines))  # with -s: the path as an operator sees it
        kinds = [SERVER.match(line).group(1).split("-")[0] for line in lines]  # type: ignore[union-attr]
        assert {"Push", "DBAgent", "Dispatcher", "STC"} <= set(kinds), lines
        assert all(f"app={app}" in line for line in lines)
        assert kinds.index("Push") < kinds.index("STC") < len(kinds) - kinds[::-1].index("Dispatcher")  # time order
        assert any("sent to 1 of 1 devices" in line for line in lines), lines
        assert any("Accepted -> Dispatching" in line for line in lines), lines
        assert any("1 receipts recorded" in line for line in lines), lines

    run(t, grid, app)


def test_the_last_lines_of_one_server_and_an_unknown_server(grid) -> None:
    out = pushgrid_logs(grid, "DBAgent-1", "-n", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert 0 < len(lines) <= 3
    wrong = pushgrid_logs(grid, "NoSuchServer")
    assert wrong.returncode == 2 and "no server 'NoSuchServer'" in wrong.stderr
