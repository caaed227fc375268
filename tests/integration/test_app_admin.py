"""`pushgrid app ...` against the real grid: what an operator types, what DBAgent then holds."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from services.common.contract import PushGrid

pytestmark = pytest.mark.integration


def pushgrid(grid, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "--run-dir", grid.path, "app", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_create_show_rotate_quota_disable_enable(grid, dbagent):
    name = "admin-" + uuid.uuid4().hex[:8]
    created = pushgrid(grid, "create", name, "--quota", "120", "--json")
    creds = json.loads(ok(created))
    assert "shown this once" in created.stderr
    key, secret = creds["appKey"], creds["masterSecret"]
    assert dbagent.verifyApp(key, secret).name == name

    shown = ok(pushgrid(grid, "show", key))
    assert f"app key:          {key}" in shown and f"name:             {name}" in shown
    assert "120 per minute" in shown and "devices:          0" in shown
    assert any(line.split()[:2] == [key, name] for line in ok(pushgrid(grid, "list")).splitlines())

    rotated = ok(pushgrid(grid, "rotate-secret", key))
    new_secret = rotated.split("master secret:")[1].split()[0]
    assert new_secret != secret
    assert dbagent.verifyApp(key, new_secret).appKey == key
    with pytest.raises(PushGrid.AuthenticationFailed):
        dbagent.verifyApp(key, secret)

    ok(pushgrid(grid, "set-quota", key, "42"))
    assert dbagent.getApp(key).pushQuotaPerMinute == 42

    ok(pushgrid(grid, "disable", key))
    assert dbagent.getApp(key).enabled is False
    with pytest.raises(PushGrid.AuthenticationFailed):
        dbagent.verifyApp(key, new_secret)
    assert json.loads(ok(pushgrid(grid, "show", key, "--json")))["enabled"] is False
    ok(pushgrid(grid, "enable", key))
    assert dbagent.verifyApp(key, new_secret).enabled is True


@pytest.mark.parametrize(
    "args", [("show", "nope"), ("rotate-secret", "0" * 24), ("set-quota", "f" * 24, "10"), ("disable", "0" * 24)]
)
def test_an_unknown_key_is_one_clear_line_and_exit_1(grid, args):
    result = pushgrid(grid, *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("pushgrid: UnknownApp: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_quota_and_a_taken_name_are_named_errors(grid, dbagent):
    name = "admin-" + uuid.uuid4().hex[:8]
    key = json.loads(ok(pushgrid(grid, "create", name, "--json")))["appKey"]
    bad = pushgrid(grid, "set-quota", key, "-5")
    assert bad.returncode == 1 and bad.stderr.startswith("pushgrid: InvalidArgument: ")
    assert dbagent.getApp(key).pushQuotaPerMinute == 600
    taken = pushgrid(grid, "create", name)
    assert taken.returncode == 1 and taken.stderr.startswith("pushgrid: AlreadyExists: ")


def test_a_device_limit_refuses_registrations_beyond_it_with_4029(grid, dbagent):
    import asyncio

    from tools.device.sdk import RegistrationFailed, register

    key = json.loads(ok(pushgrid(grid, "create", "limited-" + uuid.uuid4().hex[:8], "--json")))["appKey"]
    assert "at most 2 devices" in ok(pushgrid(grid, "set-device-limit", key, "2"))

    async def three() -> list[str]:
        got = []
        for _ in range(3):
            try:
                await register(grid.device_urls[0], key)
                got.append("registered")
            except RegistrationFailed as refused:
                got.append(str(refused))
        return got

    first, second, third = asyncio.run(three())
    assert first == second == "registered"
    assert "4029" in third and "2 of its 2 devices" in third
    assert dbagent.deviceCount(key) == 2  # the refused one left no row
    with pytest.raises(PushGrid.LimitExceeded) as err:
        dbagent.registerDevices(key, PushGrid.Platform.Ios, 1)
    assert err.value.limit == "devices" and err.value.max == 2
    ok(pushgrid(grid, "set-device-limit", key, "0"))  # no limit again
    assert dbagent.registerDevices(key, PushGrid.Platform.Ios, 5) and dbagent.deviceCount(key) == 7
    with pytest.raises(PushGrid.InvalidArgument):
        dbagent.setDeviceLimit(key, -1)


def test_registrations_from_one_address_beyond_its_burst_are_told_when_to_retry(grid, dbagent):
    import asyncio

    from services.common import limits
    from tools.device.sdk import RegistrationFailed, register

    key = json.loads(ok(pushgrid(grid, "create", "crowded-" + uuid.uuid4().hex[:8], "--json")))["appKey"]
    source = f"127.0.{200 + uuid.uuid4().int % 50}.{1 + uuid.uuid4().int % 250}"  # an address of this test's own
    burst = limits.REGISTRATIONS_PER_ADDRESS[1]

    async def flood() -> list[str]:
        gate = asyncio.Semaphore(50)

        async def one() -> str:
            async with gate:
                try:
                    await register(grid.device_urls[0], key, local_host=source, patience=0)
                    return "registered"
                except RegistrationFailed as refused:
                    return str(refused)

        return list(await asyncio.gather(*(one() for _ in range(burst + 100))))  # more than 20 s of refill

    answers = asyncio.run(flood())
    refused = [a for a in answers if a != "registered"]
    assert len(answers) - len(refused) >= burst  # the burst (and what refilled meanwhile) got in
    assert refused and all("4029" in a and "from this address; retry in" in a for a in refused)
    assert dbagent.deviceCount(key) == len(answers) - len(refused)  # a refused one left no row
    # told to wait, the SDK waits and gets in
    asyncio.run(register(grid.device_urls[0], key, local_host=source, patience=30))
