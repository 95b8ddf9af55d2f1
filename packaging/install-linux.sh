#!/bin/sh
# Install photosense's desktop integration for this user:
#   1. the system libraries Qt's window needs (X11/Wayland client libraries PySide6 does not
#      bring), when some are missing: apt-get (Debian/Ubuntu) or dnf (Fedora), through sudo
#      when not root;
#   2. the desktop entry and icon:
#      ~/.local/share/applications/photosense.desktop
#      ~/.local/share/icons/hicolor/{scalable,256x256}/apps/photosense.{svg,png}
# --system-packages does only 1, --no-system-packages only 2, --uninstall removes 2.
# Safe to run again. Uses desktop-file-install / xdg-icon-resource when installed, plain
# copies otherwise. The photosense command itself comes from pip/pipx (see packaging/README.md).
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
resources="$here/../resources"
data_home=${XDG_DATA_HOME:-"$HOME/.local/share"}
apps="$data_home/applications"
icons="$data_home/icons/hicolor"

# Keep in step with photosense/system_libs.py (DEBIAN_/FEDORA_DESKTOP_PACKAGES) and the README.
DEBIAN_PACKAGES="libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3"
FEDORA_PACKAGES="xcb-util-cursor xcb-util-wm xcb-util-image xcb-util-keysyms xcb-util-renderutil libxkbcommon-x11 libglvnd-egl libglvnd-glx fontconfig dbus-libs"

usage() {
    echo "usage: $0 [--uninstall | --system-packages | --no-system-packages]" >&2
    exit 2
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: installing system packages needs root: run as root or install sudo" >&2
        exit 1
    fi
}

system_packages() {
    missing=""
    if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
        for p in $DEBIAN_PACKAGES; do
            dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" \
                || missing="$missing $p"
        done
        if [ -n "$missing" ]; then
            echo "installing the system libraries the window needs:$missing"
            as_root apt-get update -qq
            # shellcheck disable=SC2086  # one word per package
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
        fi
    elif command -v dnf >/dev/null 2>&1 && command -v rpm >/dev/null 2>&1; then
        for p in $FEDORA_PACKAGES; do
            rpm -q "$p" >/dev/null 2>&1 || missing="$missing $p"
        done
        if [ -n "$missing" ]; then
            echo "installing the system libraries the window needs:$missing"
            # shellcheck disable=SC2086
            as_root dnf install -y -q $missing
        fi
    else
        echo "note: neither apt-get nor dnf found; install Qt's X11 client libraries" \
             "(xcb-cursor, xcb-icccm, xcb-image, xcb-keysyms, xcb-randr, xcb-render-util," \
             "xcb-shape, xcb-xkb, xkbcommon-x11, EGL, GL, fontconfig, dbus) yourself" >&2
        return 0
    fi
    if [ -z "$missing" ]; then
        echo "the system libraries the window needs are installed"
    fi
}

refresh() {
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$apps" 2>/dev/null || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t "$icons" 2>/dev/null || true
    fi
}

install_all() {
    for f in photosense.desktop photosense.svg photosense.png; do
        if [ ! -f "$resources/$f" ]; then
            echo "error: $resources/$f is missing" >&2
            exit 1
        fi
    done
    mkdir -p "$apps" "$icons/scalable/apps" "$icons/256x256/apps"

    if command -v desktop-file-install >/dev/null 2>&1; then
        desktop-file-install --dir="$apps" "$resources/photosense.desktop"
    else
        cp -f "$resources/photosense.desktop" "$apps/photosense.desktop"
    fi
    chmod 644 "$apps/photosense.desktop"

    if command -v xdg-icon-resource >/dev/null 2>&1; then
        xdg-icon-resource install --noupdate --novendor --context apps --size 256 \
            "$resources/photosense.png" photosense
        xdg-icon-resource forceupdate || true
    else
        cp -f "$resources/photosense.png" "$icons/256x256/apps/photosense.png"
    fi
    # xdg-icon-resource handles PNG only; the scalable icon is always copied.
    cp -f "$resources/photosense.svg" "$icons/scalable/apps/photosense.svg"

    refresh
    echo "installed photosense.desktop in $apps and the icon in $icons"
    if ! command -v photosense >/dev/null 2>&1; then
        echo "note: the 'photosense' command is not on PATH yet; install it with: pipx install photosense" >&2
    fi
}

uninstall_all() {
    rm -f "$apps/photosense.desktop" \
          "$icons/scalable/apps/photosense.svg" \
          "$icons/256x256/apps/photosense.png"
    refresh
    echo "removed photosense's desktop entry and icons"
}

case "${1:-}" in
    "") system_packages; install_all ;;
    --system-packages) system_packages ;;
    --no-system-packages) install_all ;;
    --uninstall) uninstall_all ;;
    -h|--help) echo "usage: $0 [--uninstall | --system-packages | --no-system-packages]"; exit 0 ;;
    *) usage ;;
esac
