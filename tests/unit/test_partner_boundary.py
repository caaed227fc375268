"""The partner SDK runs on partners' machines: it may use the contract, never server code."""

from __future__ import annotations

import json
import subprocess
import sys

from services.common import paths

# What a partner ships besides tools/partner: the Slice and the modules that read it.
CONTRACT = {
    "services",
    "services.common",
    "services.common.contract",
    "services.common.codec",
    "services.common.platforms",
    "services.common.paths",
}


def test_the_partner_sdk_imports_only_the_contract() -> None:
    probe = (
        "import json, sys\n"
        "import tools.partner.sdk, tools.partner.cli, tools.partner.builders, tools.partner.errors\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('services', 'glacier2'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=paths.ROOT, capture_output=True, text=True, check=True)
    imported = set(json.loads(out.stdout))
    assert "services.common.contract" in imported  # the probe really loaded the SDK
    assert imported <= CONTRACT, f"the partner SDK pulls in server code: {sorted(imported - CONTRACT)}"


def test_the_sdks_request_limit_is_the_routers() -> None:
    from services.common import limits
    from tools.partner.sdk import ROUTER_REQUEST_MAX_KIB

    assert ROUTER_REQUEST_MAX_KIB == limits.PARTNER_REQUEST_MAX_KIB
