#!/usr/bin/env bash
# Install, upgrade or remove the Streembit thing gateway on Raspberry Pi OS or Debian (bookworm).
#
#   sudo deploy/install.sh                 install, or upgrade in place (run it again)
#   sudo deploy/install.sh --uninstall     remove the service; keep config, keys, ACL, audit log
#   sudo deploy/install.sh --uninstall --purge --yes   ... and delete them and the user too
#   deploy/install.sh --dry-run            print every action, change nothing
#   deploy/install.sh --root DIR           install into DIR as if it were / (tests, images)
#   sudo deploy/install.sh --with qr-images,flash   ... with optional parts (kept on upgrade)
#
# What it sets up (docs/operations.md):
#   user/group streembit (system, no login) in the gpio, dialout and bluetooth groups
#   /opt/streembit-gateway/venv     the gateway in a Python venv (pip install of --source)
#   /etc/streembit-gateway/         gateway.toml (written once, never overwritten)
#   /var/lib/streembit-gateway/     state: key, owner, ACL, audit log (0700, the service user's)
#   /etc/systemd/system/streembit-gateway.service  hardened, Type=notify, watchdog
#   /etc/udev/rules.d/70-streembit-gateway.rules   GPIO and USB serial adapter access
#   mosquitto, with /etc/mosquitto/conf.d/streembit.conf (local only until boards are paired)
# An upgrade stops the service, replaces the venv's package, keeps config and state, migrates
# the state folder to the new schema version, and starts the service again.
# Optional parts (pyproject.toml's extras, --with): qr-images (zxing-cpp, Pillow: provisioning
# from a QR photo or the camera), flash (esptool, mpremote: companion flash|pair), td-validation
# (jsonschema). The ones installed are listed in /opt/streembit-gateway/INSTALLED as extras=.
set -euo pipefail
umask 022

SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SELF_DIR/.." && pwd)"

APP=streembit-gateway
SVC_USER=streembit
SVC_GROUPS=(gpio dialout bluetooth)
PREFIX=/opt/$APP
VENV=$PREFIX/venv
CONF_DIR=/etc/$APP
CONF_FILE=$CONF_DIR/gateway.toml
STATE_DIR=/var/lib/$APP
UNIT_DIR=/etc/systemd/system
UNIT=$APP.service
UDEV_RULE=/etc/udev/rules.d/70-$APP.rules
MQTT_CONF=/etc/mosquitto/conf.d/streembit.conf
MQTT_MARK="# streembit-gateway: the MQTT broker for the ESP32 companion boards."
APT_PACKAGES=(python3 python3-venv python3-pip mosquitto)
START_TIMEOUT_S=90   # systemd's TimeoutStartSec: how long `systemctl restart` may wait
KNOWN_EXTRAS=(qr-images flash td-validation)   # pyproject.toml [project.optional-dependencies]

ROOT=""
DRY_RUN=0
MODE=install
PURGE=0
YES=0
SOURCE="$REPO"
PYTHON=python3
SYSTEM_SITE=auto
USE_APT=1
START=1
LAN_IP=""
WHEELHOUSE=""
EXTRAS=()

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --dry-run               print every action without doing it
  --root DIR              install into DIR as if it were / (no apt, no systemctl, no udevadm)
  --source DIR|WHEEL      what to pip-install (default: the repository this script is in)
  --python PY             the Python (3.11+) for the venv (default: python3)
  --system-site-packages  let the venv see apt's Python packages (default on a Raspberry Pi,
                          for python3-lgpio); --no-system-site-packages to refuse
  --no-apt                do not install Debian packages
  --no-start              do not (re)start the service
  --lan-ip IP             the address put in a new config (default: the default route's)
  --wheelhouse DIR        install offline from wheels made with `pip wheel -w DIR .`
  --with EXTRA[,EXTRA]    also install optional parts (repeatable; kept on upgrade):
                            qr-images      provision from a QR photo or the camera (zxing-cpp, Pillow)
                            flash          companion flash|pair (esptool, mpremote)
                            td-validation  TD validation for Python API users (jsonschema)
  --uninstall             remove service, venv, udev rule, broker snippet; keep config and state
  --purge                 with --uninstall: also delete config, state (keys, audit log), user
  --yes                   do not ask (needed for --purge without a terminal)
  -h, --help              this text
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# add_extras LIST: the comma-separated extras LIST into EXTRAS (known names only, no repeats)
add_extras() {
    local e k ok list
    IFS=, read -r -a list <<<"$1"
    [ ${#list[@]} -gt 0 ] || die "--with needs an extra: ${KNOWN_EXTRAS[*]}"
    for e in "${list[@]}"; do
        ok=0
        for k in "${KNOWN_EXTRAS[@]}"; do [ "$e" = "$k" ] && ok=1; done
        [ "$ok" -eq 1 ] || die "--with $e: unknown extra (known: ${KNOWN_EXTRAS[*]})"
        case " ${EXTRAS[*]} " in *" $e "*) ;; *) EXTRAS+=("$e") ;; esac
    done
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT="$2"; shift ;;
        --root=*) ROOT="${1#--root=}" ;;
        --source) [ $# -ge 2 ] || die "--source needs a path"; SOURCE="$2"; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs a path"; PYTHON="$2"; shift ;;
        --system-site-packages) SYSTEM_SITE=1 ;;
        --no-system-site-packages) SYSTEM_SITE=0 ;;
        --no-apt) USE_APT=0 ;;
        --no-start) START=0 ;;
        --lan-ip) [ $# -ge 2 ] || die "--lan-ip needs an address"; LAN_IP="$2"; shift ;;
        --wheelhouse) [ $# -ge 2 ] || die "--wheelhouse needs a folder"; WHEELHOUSE="$2"; shift ;;
        --with) [ $# -ge 2 ] || die "--with needs an extra: ${KNOWN_EXTRAS[*]}"; add_extras "$2"; shift ;;
        --with=*) add_extras "${1#--with=}" ;;
        --uninstall) MODE=uninstall ;;
        --purge) PURGE=1 ;;
        --yes|-y) YES=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such folder"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != / ] || ROOT=""
fi
if [ -n "$ROOT" ]; then
    USE_APT=0   # packages cannot be installed into a folder; the target system needs them
    START=0
fi
[ "$PURGE" -eq 0 ] || [ "$MODE" = uninstall ] || die "--purge goes with --uninstall"
ROOT_ARGS=()   # for useradd, groupadd, usermod, userdel
if [ -n "$ROOT" ]; then ROOT_ARGS=(--root "$ROOT"); fi

# ------------------------------------------------------------------------------ actions
# Every change goes through act (a command) or put (a file): --dry-run prints them only.
quoted() { local out="" a; for a in "$@"; do out+=" $(printf '%q' "$a")"; done; printf '%s' "${out# }"; }

act() {
    printf '+ %s\n' "$(quoted "$@")"
    [ "$DRY_RUN" -eq 1 ] || "$@"
}

# put SRC DEST MODE OWNER GROUP: install a file atomically (temp file beside it, then rename)
put() {
    local src="$1" dest="$2" mode="$3" owner="$4" group="$5"
    printf '+ install %s -> %s (mode %s, %s:%s)\n' "$src" "$dest" "$mode" "$owner" "$group"
    [ "$DRY_RUN" -eq 1 ] && return 0
    local dir tmp
    dir="$(dirname "$dest")"
    tmp="$(mktemp "$dir/.$(basename "$dest").XXXXXX")"
    cp "$src" "$tmp"
    chmod "$mode" "$tmp"
    chown "$(uid_of "$owner"):$(gid_of "$group")" "$tmp"
    mv -f "$tmp" "$dest"
}

# put_text DEST MODE OWNER GROUP TEXT
put_text() {
    local dest="$1" mode="$2" owner="$3" group="$4" text="$5" tmp
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '+ write %s (mode %s, %s:%s, %d lines)\n' "$dest" "$mode" "$owner" "$group" \
            "$(printf '%s\n' "$text" | wc -l)"
        return 0
    fi
    tmp="$(mktemp)"
    printf '%s\n' "$text" >"$tmp"
    put "$tmp" "$dest" "$mode" "$owner" "$group" >/dev/null
    rm -f "$tmp"
    printf '+ write %s (mode %s, %s:%s)\n' "$dest" "$mode" "$owner" "$group"
}

# mkdir_owned DIR MODE OWNER GROUP
mkdir_owned() {
    local dir="$1" mode="$2" owner="$3" group="$4"
    printf '+ install -d -m %s -o %s -g %s %s\n' "$mode" "$owner" "$group" "$dir"
    [ "$DRY_RUN" -eq 1 ] && return 0
    mkdir -p "$dir"
    chmod "$mode" "$dir"
    chown "$(uid_of "$owner"):$(gid_of "$group")" "$dir"
}

# Users and groups are looked up in the target's own files (also under --root).
uid_of() {
    [ "$1" = root ] && { echo 0; return; }
    awk -F: -v n="$1" '$1 == n { print $3; found = 1 } END { exit !found }' "$ROOT/etc/passwd" \
        || die "no user $1 in $ROOT/etc/passwd"
}
gid_of() {
    [ "$1" = root ] && { echo 0; return; }
    awk -F: -v n="$1" '$1 == n { print $3; found = 1 } END { exit !found }' "$ROOT/etc/group" \
        || die "no group $1 in $ROOT/etc/group"
}
has_user() { [ -f "$ROOT/etc/passwd" ] && awk -F: -v n="$1" '$1 == n { f = 1 } END { exit !f }' "$ROOT/etc/passwd"; }
has_group() { [ -f "$ROOT/etc/group" ] && awk -F: -v n="$1" '$1 == n { f = 1 } END { exit !f }' "$ROOT/etc/group"; }

# as_service CMD...: run as the service user (under --root: as ourselves, then chown the state)
as_service() {
    if [ -n "$ROOT" ] || [ "$(id -u)" -ne 0 ]; then
        act "$@"
    else
        act runuser -u "$SVC_USER" -- "$@"
    fi
}

# systemctl_ ARGS: systemctl on the real system only; a failure is reported, not fatal
systemctl_() {
    if [ -z "$ROOT" ] && command -v systemctl >/dev/null; then
        act systemctl "$@" || warn "systemctl $* failed"
    fi
}

# ------------------------------------------------------------------------------ checks
preflight() {
    if [ "$DRY_RUN" -eq 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (sudo $0), or try --dry-run / --root DIR"
    fi
    if [ -z "$ROOT" ] && [ -r /etc/os-release ]; then
        local id like
        id="$(sed -n 's/^ID=//p' /etc/os-release | tr -d '"')"
        like="$(sed -n 's/^ID_LIKE=//p' /etc/os-release | tr -d '"')"
        case " $id $like " in
            *" debian "*|*" raspbian "*) ;;
            *) warn "made for Debian and Raspberry Pi OS; this is '$id': continuing" ;;
        esac
    fi
}

is_raspberry_pi() {
    [ -r "$ROOT/proc/device-tree/model" ] && grep -qa "Raspberry Pi" "$ROOT/proc/device-tree/model"
}

lan_ip() {
    if [ -n "$LAN_IP" ]; then echo "$LAN_IP"; return; fi
    local ip=""
    if command -v ip >/dev/null; then   # a routing table lookup: sends nothing
        ip="$(ip -4 route get 192.0.2.1 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1) }' | head -n1)"
    fi
    echo "${ip:-127.0.0.1}"
}

# ------------------------------------------------------------------------------ install
install_packages() {
    [ "$USE_APT" -eq 1 ] || { say "skipping Debian packages (${APT_PACKAGES[*]})"; return 0; }
    local pkgs=("${APT_PACKAGES[@]}") missing=() p
    if is_raspberry_pi; then pkgs+=(python3-lgpio); fi
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || { say "Debian packages present"; return 0; }
    say "installing Debian packages: ${missing[*]}"
    act apt-get update -qq
    act env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_user() {
    local g f
    if [ -n "$ROOT" ] && [ ! -e "$ROOT/etc/passwd" ]; then
        # a bare folder: give it the account files that useradd --root expects
        mkdir_owned "$ROOT/etc" 0755 root root
        for f in passwd group shadow gshadow; do
            if [ ! -e "$ROOT/etc/$f" ]; then act touch "$ROOT/etc/$f"; fi
        done
    fi
    for g in "${SVC_GROUPS[@]}"; do
        if ! has_group "$g"; then
            act groupadd --system "${ROOT_ARGS[@]}" "$g"
        fi
    done
    local groups
    groups="$(IFS=,; echo "${SVC_GROUPS[*]}")"
    if has_user "$SVC_USER"; then
        act usermod "${ROOT_ARGS[@]}" -a -G "$groups" "$SVC_USER"
    else
        act useradd --system "${ROOT_ARGS[@]}" --user-group --no-create-home \
            --home-dir "$STATE_DIR" --shell /usr/sbin/nologin --groups "$groups" \
            --comment "Streembit thing gateway" "$SVC_USER"
    fi
}

make_dirs() {
    mkdir_owned "$ROOT$PREFIX" 0755 root root
    mkdir_owned "$ROOT$CONF_DIR" 0750 root "$SVC_USER"
    mkdir_owned "$ROOT$STATE_DIR" 0700 "$SVC_USER" "$SVC_USER"
}

install_venv() {
    local venv="$ROOT$VENV" site=()
    if [ "$SYSTEM_SITE" = 1 ] || { [ "$SYSTEM_SITE" = auto ] && is_raspberry_pi; }; then
        site=(--system-site-packages)
    fi
    if [ "$DRY_RUN" -eq 0 ]; then
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "$PYTHON is older than Python 3.11"
    fi
    local fresh=0 offline=()
    if [ ! -x "$venv/bin/python" ]; then
        act "$PYTHON" -m venv "${site[@]}" "$venv"
        fresh=1
    elif ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        act "$PYTHON" -m venv --clear "${site[@]}" "$venv"   # its Python went away (OS upgrade)
        fresh=1
    fi
    if [ -n "$WHEELHOUSE" ]; then
        offline=(--no-index --find-links "$WHEELHOUSE")
    elif [ "$fresh" -eq 1 ]; then
        # the pip a new venv brings along is old: a current one resolves twice as fast
        act "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    fi
    # the extras of the last install stay (an upgrade without --with keeps them)
    local before
    before="$(sed -n 's/^extras=//p' "$ROOT$PREFIX/INSTALLED" 2>/dev/null || true)"
    if [ -n "$before" ]; then add_extras "$before"; fi
    local spec="$SOURCE"
    if [ ${#EXTRAS[@]} -gt 0 ]; then
        spec="${SOURCE}[$(IFS=,; echo "${EXTRAS[*]}")]"
        say "with the optional parts: ${EXTRAS[*]}"
    fi
    # --upgrade keeps satisfied dependencies (only-if-needed) and reinstalls the gateway itself
    act "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${offline[@]}" \
        --upgrade "$spec"
}

write_config() {
    local dest="$ROOT$CONF_FILE" text ip host
    ip="$(lan_ip)"
    host="$(hostname -s 2>/dev/null || echo raspberrypi)"
    [ -z "$ROOT" ] || host="$(cat "$ROOT/etc/hostname" 2>/dev/null || echo raspberrypi)"
    text="$(sed -e "s/@NAME@/$host gateway/" -e "s/@HOSTNAME@/$host/g" -e "s/@LAN_IP@/$ip/g" \
        "$SELF_DIR/gateway.toml")"
    if [ -e "$dest" ]; then
        say "keeping $CONF_FILE (the new template goes to $CONF_FILE.dist)"
        put_text "$dest.dist" 0640 root "$SVC_USER" "$text"
    else
        put_text "$dest" 0640 root "$SVC_USER" "$text"
    fi
}

init_state() {
    local bin="$ROOT$VENV/bin/$APP"
    # the gateway key (kept if present) and the state schema: both as the service user
    as_service "$bin" init --state "$ROOT$STATE_DIR"
    as_service "$bin" migrate --state "$ROOT$STATE_DIR" \
        || warn "state not migrated now; the gateway migrates it when it starts"
    if [ -n "$ROOT" ] && [ "$DRY_RUN" -eq 0 ]; then
        chown -R "$(uid_of "$SVC_USER"):$(gid_of "$SVC_USER")" "$ROOT$STATE_DIR"
    fi
}

install_system_files() {
    mkdir_owned "$ROOT$UNIT_DIR" 0755 root root
    put "$SELF_DIR/$UNIT" "$ROOT$UNIT_DIR/$UNIT" 0644 root root
    mkdir_owned "$ROOT$(dirname "$UDEV_RULE")" 0755 root root
    put "$SELF_DIR/70-$APP.rules" "$ROOT$UDEV_RULE" 0644 root root
    if [ -z "$ROOT" ] && command -v udevadm >/dev/null; then
        act udevadm control --reload
        act udevadm trigger --subsystem-match=tty --subsystem-match=gpio --action=change
    fi
    systemctl_ daemon-reload
    systemctl_ enable "$UNIT"
}

configure_broker() {
    local conf="$ROOT$MQTT_CONF" dir owner=root group=root f written=0
    dir="$(dirname "$conf")"
    if [ -e "$conf" ]; then
        say "keeping $MQTT_CONF"
    else
        written=1
        mkdir_owned "$dir" 0755 root root
        if has_user mosquitto && has_group mosquitto; then owner=mosquitto; group=mosquitto; fi
        put "$SELF_DIR/mosquitto-streembit.conf" "$conf" 0644 root root
        for f in passwd acl; do   # empty: nobody may log in until boards are paired
            if [ ! -e "$dir/$f" ]; then put /dev/null "$dir/$f" 0600 "$owner" "$group"; fi
        done
        if [ "$owner" = root ] && [ -z "$ROOT" ] && [ "$DRY_RUN" -eq 0 ]; then
            warn "no mosquitto user: the broker may not read $dir/passwd"
        fi
    fi
    if [ "$written" -eq 1 ]; then
        systemctl_ enable mosquitto
        systemctl_ restart mosquitto   # picks up the new listener
    else
        systemctl_ enable --now mosquitto   # boards stay connected: no restart
    fi
}

start_service() {
    [ "$START" -eq 1 ] || { say "not starting the service (--no-start or --root)"; return 0; }
    act timeout "$START_TIMEOUT_S" systemctl restart "$UNIT" || {
        warn "$APP did not start; see: journalctl -u $APP -n 50; $APP doctor"
        return 1
    }
}

do_install() {
    local upgrade=0
    [ -x "$ROOT$VENV/bin/$APP" ] && upgrade=1
    if [ "$upgrade" -eq 1 ]; then say "upgrading $APP in place (config and state are kept)"
    else say "installing $APP"; fi
    preflight
    install_packages
    ensure_user
    make_dirs
    if [ "$upgrade" -eq 1 ]; then systemctl_ stop "$UNIT"; fi
    install_venv
    write_config
    init_state
    install_system_files
    configure_broker
    put_text "$ROOT$PREFIX/INSTALLED" 0644 root root \
        "source=$SOURCE
extras=$(IFS=,; echo "${EXTRAS[*]}")
installed=$(date -u +%Y-%m-%dT%H:%M:%SZ)
$( [ "$DRY_RUN" -eq 1 ] || "$ROOT$VENV/bin/python" -c 'from importlib.metadata import version as v; print("version=" + v("streembit-gateway"))')"
    start_service
    local id="(dry run)"
    if [ "$DRY_RUN" -eq 0 ]; then
        id="$("$ROOT$VENV/bin/$APP" init --state "$ROOT$STATE_DIR" --json | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')"
    fi
    cat <<EOF

$APP $( [ "$upgrade" -eq 1 ] && echo upgraded || echo installed ). Gateway id: $id
  config      $CONF_FILE   (edit, then: sudo systemctl restart $APP)
  state       $STATE_DIR   (key, owner, ACL, audit log)
  status      systemctl status $APP; journalctl -u $APP
  check       sudo -u $SVC_USER $VENV/bin/$APP doctor
  claim it    sudo -u $SVC_USER $VENV/bin/$APP qr --state $STATE_DIR --config $CONF_FILE
  status page http://$(lan_ip):8080/status (with a granted key)
EOF
}

# ------------------------------------------------------------------------------ uninstall
confirm_purge() {
    [ "$YES" -eq 1 ] && return 0
    [ -t 0 ] || die "--purge deletes the gateway's keys and audit log: add --yes to confirm"
    local answer
    read -r -p "Delete $CONF_DIR and $STATE_DIR (keys, ACL, audit log) and user $SVC_USER? Type PURGE: " answer
    [ "$answer" = PURGE ] || die "not purged"
}

do_uninstall() {
    preflight
    [ "$PURGE" -eq 0 ] || confirm_purge
    say "removing $APP"
    systemctl_ disable --now "$UNIT"
    if [ -e "$ROOT$UNIT_DIR/$UNIT" ]; then act rm -f "$ROOT$UNIT_DIR/$UNIT"; fi
    systemctl_ daemon-reload
    if [ -e "$ROOT$UDEV_RULE" ]; then act rm -f "$ROOT$UDEV_RULE"; fi
    if [ -d "$ROOT$PREFIX" ]; then act rm -rf "$ROOT$PREFIX"; fi
    if [ -e "$ROOT$MQTT_CONF" ] && head -n1 "$ROOT$MQTT_CONF" | grep -qxF "$MQTT_MARK"; then
        act rm -f "$ROOT$MQTT_CONF"
        systemctl_ try-restart mosquitto
    elif [ -e "$ROOT$MQTT_CONF" ]; then
        say "keeping $MQTT_CONF (the gateway's broker config for paired boards; remove by hand)"
    fi
    if [ "$PURGE" -eq 1 ]; then
        act rm -rf "$ROOT$CONF_DIR" "$ROOT$STATE_DIR"
        if has_user "$SVC_USER"; then
            act userdel "${ROOT_ARGS[@]}" "$SVC_USER"
        fi
        say "purged: config, state and user $SVC_USER are gone"
    else
        say "kept: $CONF_DIR, $STATE_DIR (key, owner, ACL, audit log), user $SVC_USER"
        say "reinstall with deploy/install.sh; delete them with --uninstall --purge"
    fi
}

if [ "$DRY_RUN" -eq 1 ]; then say "dry run: nothing is changed"; fi
if [ -n "$ROOT" ]; then say "installing into $ROOT (as if it were /)"; fi
case "$MODE" in
    install) do_install ;;
    uninstall) do_uninstall ;;
esac
