#!/bin/sh
# Install (or with --uninstall, remove) photosense's desktop entry and icon for this user:
#   ~/.local/share/applications/photosense.desktop
#   ~/.local/share/icons/hicolor/{scalable,256x256}/apps/photosense.{svg,png}
# Safe to run again. Uses desktop-file-install / xdg-icon-resource when installed, plain
# copies otherwise. The photosense command itself comes from pip/pipx (see packaging/README.md).
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
resources="$here/../resources"
data_home=${XDG_DATA_HOME:-"$HOME/.local/share"}
apps="$data_home/applications"
icons="$data_home/icons/hicolor"

usage() {
    echo "usage: $0 [--uninstall]" >&2
    exit 2
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
    "") install_all ;;
    --uninstall) uninstall_all ;;
    -h|--help) echo "usage: $0 [--uninstall]"; exit 0 ;;
    *) usage ;;
esac
