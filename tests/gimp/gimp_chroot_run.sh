#!/usr/bin/env bash
# Run a python-fu-eval driver in the real gimp-console of a Debian chroot (as root).
#
#   tests/gimp/gimp_chroot_run.sh [--gui] ROOT WORKDIR [VAR=value...]
#
# WORKDIR must hold profile/plug-ins/<name>/ (the plug-in, executable) and driver.py; it is bound
# at /e2e-gimp inside ROOT (not /e2e, which the Krita tests use) and GIMP runs with a clean
# environment (a venv python3 first on PATH would break every GIMP Python plug-in), a throw-away
# profile and caches under WORKDIR. The chroot shares the host network, so a daemon on 127.0.0.1
# is reachable. GIMP's output goes to WORKDIR/gimp.log; the exit status is gimp-console's
# (0 ok, 64 the driver raised, 69 python-fu-eval unusable, 124 timeout).
# --gui: run WORKDIR/gui_inside.sh instead (real `gimp` under Xvfb; its output goes to WORKDIR/gui.log).
# This repository and the Python installation its .venv points to (sys.base_prefix: .venv/bin/python is a
# symlink into it) are bound read-only at their own paths inside ROOT, so the plug-in's Daemon... procedure
# can start the project's own `.venv/bin/draggan serve` inside the chroot (the chroot's glibc is newer).
# GIMP_TIMEOUT: seconds for the run (default 240).
set -euo pipefail
gui=0
if [[ ${1:-} == --gui ]]; then gui=1; shift; fi
root=$1 work=$(realpath "$2"); shift 2
[[ -d $root/usr/bin ]] || { echo "no chroot at $root" >&2; exit 2; }
console=$(cd "$root/usr/bin" && ls gimp-console-3.* 2>/dev/null | sort | tail -n1)
[[ -n $console ]] || { echo "no gimp-console in $root" >&2; exit 2; }

exec 8>"$root.run.lock"
flock 8  # one run at a time per chroot (proc and /dev/shm are shared with other harnesses)
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT
mkdir -p "$root/e2e-gimp"
if ! mountpoint -q "$root/proc"; then mount -t proc proc "$root/proc"; mounted+=("$root/proc"); fi
if ! mountpoint -q "$root/dev/shm"; then mount -t tmpfs -o size=1g tmpfs "$root/dev/shm"; mounted+=("$root/dev/shm"); fi
mount --bind "$work" "$root/e2e-gimp"
mounted+=("$root/e2e-gimp")
bind_ro() {  # SRC at the same path inside ROOT, read-only
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  mounted+=("$root$1")
  mount -o remount,bind,ro "$root$1"
}
repo=$(cd "$(dirname "$0")/../.." && pwd)
bind_ro "$repo"
if [[ -x $repo/.venv/bin/python ]]; then
  base=$("$repo/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')
  case $base in  # never cover the chroot's own system folders with the host's
    /|/usr|/usr/*|/bin|/bin/*|/lib|/lib/*|/lib64|/lib64/*|/etc|/etc/*|/var|/var/*|/proc*|/dev*|/sys*) ;;
    *) [[ $base == "$repo"/* ]] || bind_ro "$base" ;;
  esac
fi
mkdir -p "$work/home"

set +e
if ((gui)); then
  timeout -k 10 "${GIMP_TIMEOUT:-240}" chroot "$root" env -i PATH=/usr/bin:/bin LANG=C.UTF-8 E2E_DIR=/e2e-gimp "$@" \
    bash /e2e-gimp/gui_inside.sh >"$work/gui.log" 2>&1
  exit $?
fi
timeout -k 10 "${GIMP_TIMEOUT:-240}" chroot "$root" env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
  HOME=/e2e-gimp/home XDG_CONFIG_HOME=/e2e-gimp/home/.config XDG_CACHE_HOME=/e2e-gimp/home/.cache \
  XDG_DATA_HOME=/e2e-gimp/home/.local/share GIMP3_DIRECTORY=/e2e-gimp/profile E2E_DIR=/e2e-gimp "$@" \
  "/usr/bin/$console" -i -n -c --batch-interpreter=python-fu-eval \
  -b 'exec(open("/e2e-gimp/driver.py").read())' --quit >"$work/gimp.log" 2>&1
rc=$?
set -e
exit $rc
