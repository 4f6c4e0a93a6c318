#!/usr/bin/env bash
# Install the real editors the plug-in end-to-end tests run in, and the load balancer the studio test puts in
# front of two daemons. As root; idempotent.
#   host (Debian 12 or 13): Krita from the host's own release, Xvfb and xdotool; HAProxy (tests/test_daemon_balancer.py)
#   /var/tmp/draggan-trixie: Debian 13 chroot with Krita 5.2 and GIMP 3.0 (a Debian 12 host has neither)
#   /var/tmp/draggan-forky: Debian forky chroot with GIMP 3.2
# Chroot locations: DRAGGAN_TRIXIE_ROOT, DRAGGAN_FORKY_ROOT. Debian mirror: DEBIAN_MIRROR (default: the host's).
set -euo pipefail
cd "$(dirname "$0")/.."
HOST_PKGS=(krita python3-pyqt5 xvfb xauth xdotool zip x11-apps imagemagick haproxy)
CHROOT_PKGS=(krita python3-pyqt5 gimp python3-gi gir1.2-gimp-3.0 xvfb xauth xdotool zip procps x11-apps imagemagick
             fonts-dejavu-core)

missing=()
for p in "${HOST_PKGS[@]}" debootstrap; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
scripts/debian_chroot.sh ensure trixie "${DRAGGAN_TRIXIE_ROOT:-/var/tmp/draggan-trixie}" "${CHROOT_PKGS[@]}"
scripts/debian_chroot.sh ensure forky "${DRAGGAN_FORKY_ROOT:-/var/tmp/draggan-forky}" \
    gimp python3-gi gir1.2-gimp-3.0 xvfb xauth xdotool imagemagick fonts-dejavu-core
