#!/usr/bin/env bash
# The two set-up commands of the README, for a fresh Debian or Raspberry Pi OS machine:
#   deploy/dev.sh demo [ARGS...]   set up, then run the gateway's embedded demo (simulated Things)
#   deploy/dev.sh test [PYTEST...] set up everything the tests use, then run lint, types and tests
# Set-up is idempotent: a venv in .venv, Debian packages (python3-venv, mosquitto, socat, nodejs,
# npm) only when missing, and the npm packages of the interop tests from their lock file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

# bold only on a terminal, and never with NO_COLOR set (https://no-color.org) or TERM=dumb
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ] && [ "${TERM:-}" != dumb ]; then
    say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
    say() { printf '==> %s\n' "$*" >&2; }
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
    # apt_install PKG... : install the Debian packages that are not installed yet
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        say "please install: ${missing[*]} (no apt-get here)"; return 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"; as_root apt-get update -qq; APT_UPDATED=1
    fi
    say "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

need_python() {
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        say "Python 3.11 or newer is needed (found: $("$PY" --version 2>&1 || echo none))"
        exit 2
    fi
    if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3-venv
    fi
}

setup_venv() {
    need_python
    local extra="$1" stamp="$VENV/.installed-$1"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtual environment in .venv"
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        say "installing streembit-gateway${extra:+ [$extra]} into .venv"
        "$VENV/bin/python" -m pip install -q -e ".${extra:+[$extra]}"
        touch "$stamp"
    fi
}

setup_test_tools() {
    apt_install mosquitto socat dbus-daemon  # dbus-daemon: the BLE tests' private bus
    # install.sh and the ops tests: shellcheck, systemd-analyze (systemd), unshare + ip for the
    # mDNS network namespace (util-linux, iproute2), pgrep (procps), the status page's browser
    apt_install shellcheck systemd util-linux iproute2 procps chromium
    # the NAT lab (tests/netns/natlab.py): routers' nft rulesets, UPnP/NAT-PMP daemon and client;
    # miniupnpd's debconf default leaves its service disabled (the lab runs it in a namespace)
    apt_install nftables miniupnpd miniupnpc
    if ! command -v node >/dev/null \
        || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
        apt_install nodejs
    fi
    command -v npm >/dev/null || apt_install npm
    if [ ! -d tests/interop/node_modules ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules ]; then
        say "installing the interop tests' npm packages (node-wot)"
        (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
        touch tests/interop/node_modules
    fi
    # the web app's build tools and libraries (gateway/webapp: esbuild, jose, uqr, jsqr); the built
    # bundle is committed, the tests check that it matches a fresh build
    if [ ! -d gateway/webapp/node_modules ] || [ gateway/webapp/package-lock.json -nt gateway/webapp/node_modules ]; then
        say "installing the web app's npm packages (esbuild, jose, uqr, jsqr)"
        (cd gateway/webapp && npm ci --no-audit --no-fund --loglevel=error)
        touch gateway/webapp/node_modules
    fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
    demo)
        setup_venv ""
        exec "$VENV/bin/streembit-gateway" demo "$@"
        ;;
    test)
        setup_venv dev   # dev includes every optional part: qr-images, flash, td-validation
        setup_test_tools
        say "ruff"; "$VENV/bin/ruff" check gateway device_drivers hardware tests bench
        say "mypy --strict"; "$VENV/bin/mypy"
        say "pytest"
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: deploy/dev.sh demo [--state DIR] [--http-port N] [--json]" >&2
        echo "       deploy/dev.sh test [PYTEST ARGS...]" >&2
        exit 2
        ;;
esac
