#!/usr/bin/env bash
# Install the DragGAN GIMP plug-in for the current user (Linux; idempotent).
#
#   scripts/install_gimp_plugin.sh              into ~/.config/GIMP/3.0/plug-ins and ~/.config/GIMP/3.2/plug-ins
#                                               (and the Flatpak GIMP's profile when it exists)
#   scripts/install_gimp_plugin.sh DIR...       into each given plug-ins folder instead
#
# Copies plugin_gimp/draggan/ to PLUGINS/draggan/ with the current client side shared with the Krita
# plug-in (draggan_client/ as PLUGINS/draggan/draggan_client/), and makes draggan.py executable
# (GIMP silently ignores it otherwise).
# Restart GIMP afterwards. $XDG_CONFIG_HOME is honoured.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=$repo/plugin_gimp/draggan
config=${XDG_CONFIG_HOME:-$HOME/.config}

if (($#)); then
  targets=("$@")
else
  targets=("$config/GIMP/3.0/plug-ins" "$config/GIMP/3.2/plug-ins")
  flatpak=$HOME/.var/app/org.gimp.GIMP/config/GIMP
  [[ -d $flatpak ]] && targets+=("$flatpak/3.0/plug-ins" "$flatpak/3.2/plug-ins")
fi

for plugins in "${targets[@]}"; do
  dest=$plugins/draggan
  mkdir -p "$dest"
  for f in draggan.py draggan_daemon_panel.py draggan_gimp.py draggan_logic.py draggan_live.py draggan_settings.py draggan_watchdog.py; do
    cp "$src/$f" "$dest/$f"
  done
  rm -rf "$dest/draggan_client" "$dest/__pycache__" "$dest/draggan_client.py" "$dest/draggan_png.py"
  mkdir "$dest/draggan_client"
  cp "$repo"/draggan_client/*.py "$dest/draggan_client/"
  chmod 755 "$dest/draggan.py"
  echo "installed $dest"
done
echo "Restart GIMP; then Filters > DragGAN > Daemon... starts the daemon, and DragGAN Drag... / New image from model... use it"
