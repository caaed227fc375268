#!/usr/bin/env bash
# Installs what pushgrid needs on a fresh Debian bookworm machine, and nothing twice:
# ZeroC Ice 3.7 and its Python binding from Debian, MariaDB, Redis, the virtualenv (made from
# Debian's /usr/bin/python3 so it sees python3-zeroc-ice) and the pinned pip packages.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(zeroc-icegrid zeroc-glacier2 zeroc-icepatch2 zeroc-ice-utils zeroc-ice-compilers
              zeroc-ice-slice python3-zeroc-ice mariadb-server redis-server redis-tools
              python3-venv openssl iproute2 chromium openssh-server openssh-client)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv from /usr/bin/python3 (with Debian's Ice binding)"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.pushgrid-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
    echo "bootstrap: installing pip packages (setup.cfg)"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test,bench,check]'
    touch "$stamp"
fi
