#!/bin/sh
# Install vigil-sensor from this tarball on a Linux host without dpkg
# packages (any systemd distribution; without systemd, run the sensor under
# your own supervisor). POSIX sh; running it twice changes nothing.
#
#   sh install.sh                      install or upgrade
#   sh install.sh --uninstall          remove binary and unit; keep config and
#                                      state (a re-install is still enrolled)
#   sh install.sh --uninstall --purge  also delete config and state (identity,
#                                      spool)
#
# Layout: /usr/local/bin/vigil-sensor (0755),
# /etc/systemd/system/vigil-sensor.service (0644), the daily update check
# /etc/systemd/system/vigil-sensor-update.{service,timer} (0644, the timer
# enabled), /etc/vigil/sensor.toml
# (0640, never overwritten), /var/lib/vigil-sensor (0700), and when the
# tarball ships one, the vendor's update root
# /usr/share/vigil-sensor/update-root.json (0644).
set -eu

BIN=/usr/local/bin/vigil-sensor
UNIT=/etc/systemd/system/vigil-sensor.service
UPDATE_UNIT=/etc/systemd/system/vigil-sensor-update.service
UPDATE_TIMER=/etc/systemd/system/vigil-sensor-update.timer
CONF_DIR=/etc/vigil
CONF=$CONF_DIR/sensor.toml
STATE=/var/lib/vigil-sensor
ROOT_DIR=/usr/share/vigil-sensor
ROOT_FILE=$ROOT_DIR/update-root.json
HERE=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

say() {
    echo "install.sh: $*"
}

usage() {
    echo "usage: sh install.sh [--uninstall [--purge]]" >&2
    exit 2
}

uninstall=no
purge=no
for arg in "$@"; do
    case "$arg" in
        --uninstall) uninstall=yes ;;
        --purge) purge=yes ;;
        -h|--help) usage ;;
        *) echo "install.sh: unknown argument: $arg" >&2; usage ;;
    esac
done
[ "$purge" = yes ] && [ "$uninstall" = no ] && die "--purge goes with --uninstall"
[ "$(id -u)" = 0 ] || die "run as root (the sensor and its files are root's)"

# Two installs of one sensor would fight over the state directory.
if command -v dpkg-query >/dev/null 2>&1 &&
    dpkg-query -W -f='${Status}' vigil-sensor 2>/dev/null | grep -q 'install ok installed'; then
    die "vigil-sensor is installed from the .deb; use apt/dpkg to manage it"
fi

systemd_running() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

if [ "$uninstall" = yes ]; then
    if systemd_running; then
        systemctl disable --now vigil-sensor-update.timer >/dev/null 2>&1 || true
        systemctl stop vigil-sensor-update.service >/dev/null 2>&1 || true
        systemctl disable --now vigil-sensor.service >/dev/null 2>&1 || true
    fi
    # With the binary goes what `vigil-sensor update` left beside it.
    rm -f "$BIN" "$BIN.prev" /usr/local/bin/.vigil-sensor.new
    rm -f "$UNIT" "$UPDATE_UNIT" "$UPDATE_TIMER" "$ROOT_FILE"
    rmdir "$ROOT_DIR" 2>/dev/null || true
    rm -f /etc/systemd/system/multi-user.target.wants/vigil-sensor.service
    rm -f /etc/systemd/system/timers.target.wants/vigil-sensor-update.timer
    if systemd_running; then
        systemctl daemon-reload
    fi
    say "removed $BIN and $UNIT"
    if [ "$purge" = yes ]; then
        rm -rf "$STATE"
        rm -f "$CONF"
        rmdir "$CONF_DIR" 2>/dev/null || true
        say "purged $STATE and $CONF"
    else
        say "kept $CONF and $STATE (enrollment); --uninstall --purge deletes them"
    fi
    exit 0
fi

for f in vigil-sensor vigil-sensor.service vigil-sensor-update.service vigil-sensor-update.timer sensor.toml; do
    [ -f "$HERE/$f" ] || die "$HERE/$f is missing: run install.sh from the extracted tarball"
done

# Stop a running sensor so the binary can be replaced (its spool is
# crash-safe); started again below.
was_active=no
if systemd_running && systemctl is-active --quiet vigil-sensor.service; then
    was_active=yes
    systemctl stop vigil-sensor.service
fi

# Copy then rename, so a running or concurrent exec never sees half a file.
install -d -m 0755 /usr/local/bin
install -m 0755 "$HERE/vigil-sensor" "$BIN.new"
mv -f "$BIN.new" "$BIN"

# The root `vigil-sensor enroll` trusts for updates by default.
if [ -f "$HERE/usr/share/vigil-sensor/update-root.json" ]; then
    install -d -m 0755 "$ROOT_DIR"
    install -m 0644 "$HERE/usr/share/vigil-sensor/update-root.json" "$ROOT_FILE.new"
    mv -f "$ROOT_FILE.new" "$ROOT_FILE"
fi

install -d -m 0755 /etc/systemd/system
sed 's#^ExecStart=/usr/bin/vigil-sensor #ExecStart=/usr/local/bin/vigil-sensor #' \
    "$HERE/vigil-sensor.service" >"$UNIT.new"
chmod 0644 "$UNIT.new"
mv -f "$UNIT.new" "$UNIT"
# The update service runs and replaces the binary in /usr/local/bin.
sed -e 's#^ExecStart=/usr/bin/vigil-sensor #ExecStart=/usr/local/bin/vigil-sensor #' \
    -e 's#^ReadWritePaths=/usr/bin #ReadWritePaths=/usr/local/bin #' \
    "$HERE/vigil-sensor-update.service" >"$UPDATE_UNIT.new"
chmod 0644 "$UPDATE_UNIT.new"
mv -f "$UPDATE_UNIT.new" "$UPDATE_UNIT"
install -m 0644 "$HERE/vigil-sensor-update.timer" "$UPDATE_TIMER.new"
mv -f "$UPDATE_TIMER.new" "$UPDATE_TIMER"

install -d -m 0755 "$CONF_DIR"
if [ -e "$CONF" ]; then
    say "kept the existing $CONF"
else
    install -m 0640 "$HERE/sensor.toml" "$CONF"
fi

# Private even if it existed: it holds the sensor's key once enrolled.
install -d -m 0700 "$STATE"
chmod 0700 "$STATE"

if systemd_running; then
    systemctl daemon-reload
    # Enabled now; the unit's ConditionPathExists keeps it from starting
    # until `vigil-sensor enroll` has written the certificate.
    systemctl enable vigil-sensor.service >/dev/null 2>&1
    # The daily update check; its service skips itself until enrollment
    # turned updates on.
    systemctl enable --now vigil-sensor-update.timer >/dev/null 2>&1
    [ "$was_active" = yes ] && systemctl start vigil-sensor.service
elif command -v systemctl >/dev/null 2>&1; then
    # No running systemd (a chroot, an image build): enable offline.
    systemctl enable vigil-sensor.service >/dev/null 2>&1 || true
    systemctl enable vigil-sensor-update.timer >/dev/null 2>&1 || true
fi

say "installed $BIN ($("$BIN" --version))"
say "next: vigil-sensor enroll --appliance HOST:PORT --token-file FILE --ca-sha256 FP"
say "      then set appliance in $CONF and: systemctl start vigil-sensor"
