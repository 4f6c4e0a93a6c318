#!/usr/bin/env bash
# Debian chroots for testing the plug-ins in editor versions the host does not package
# (Krita 5.2 and GIMP 3.0 from Debian 13 "trixie", GIMP 3.2 from "forky"). As root.
#
#   scripts/debian_chroot.sh ensure SUITE ROOT PACKAGE...   build ROOT once, then add missing packages
#   scripts/debian_chroot.sh run ROOT WORKDIR COMMAND...    run COMMAND in ROOT with WORKDIR bound at /e2e
#
# The chroot shares the host's network namespace, so a daemon on 127.0.0.1 is reachable from inside.
# `run` mounts proc and a tmpfs /dev/shm (enough for Qt and GEGL), starts COMMAND with a clean
# environment (env -i PATH=/usr/bin:/bin LANG=C.UTF-8 plus any VAR=value words before COMMAND),
# and unmounts on exit. Calls on one ROOT are serialised by lock files.
# DRAGGAN_CHROOT_BINDS: host folders (separated by ':') that `run` also binds, read-only, at the same path
# inside ROOT, e.g. this repository and the Python installation its .venv points to, so that a program of
# the host (the project's .venv/bin/draggan) runs inside the chroot.
# DEBIAN_MIRROR overrides the mirror taken from the host's apt sources.
set -euo pipefail

mirror() {
  local m=${DEBIAN_MIRROR:-$( (sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources; \
    awk '$1=="deb"{print $2}' /etc/apt/sources.list) 2>/dev/null | grep -v security | head -n1)}
  [[ -n $m ]] || { echo "no Debian mirror in the host apt sources; set DEBIAN_MIRROR" >&2; exit 2; }
  echo "$m"
}

apt_options() {  # testing/sid Release files can be past their Valid-Until date
  [[ $1 == trixie ]] || echo "-o Acquire::Check-Valid-Until=false"
}

bootstrap() {
  local suite=$1 root=$2 m script
  m=$(mirror)
  command -v debootstrap >/dev/null || { apt-get update -q >/dev/null; apt-get install -y -q debootstrap >/dev/null; }
  rm -rf "$root"
  script=/usr/share/debootstrap/scripts/$suite
  [[ -e $script ]] || script=/usr/share/debootstrap/scripts/sid
  debootstrap --variant=minbase "$suite" "$root" "$m" "$script" >"$root.debootstrap.log" 2>&1 \
    || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  if [[ $suite == trixie ]]; then
    printf 'deb %s trixie-updates main\ndeb %s-security trixie-security main\n' "$m" "$m" \
      >"$root/etc/apt/sources.list.d/updates.list"
  fi
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  touch "$root/.packages"
}

ensure() {
  local suite=$1 root=$2; shift 2
  mkdir -p "$(dirname "$root")"
  exec 9>"$root.lock"
  flock 9
  [[ -e $root/.packages ]] || bootstrap "$suite" "$root"
  local missing=()
  for p in "$@"; do grep -qx "$p" "$root/.packages" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  # shellcheck disable=SC2046
  chroot "$root" apt-get $(apt_options "$suite") update -q >/dev/null
  # shellcheck disable=SC2046
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get $(apt_options "$suite") install -y -q \
    --no-install-recommends "${missing[@]}" >"$root.apt.log" 2>&1 || { tail -20 "$root.apt.log" >&2; exit 1; }
  chroot "$root" apt-get clean
  printf '%s\n' "${missing[@]}" >>"$root/.packages"
}

RUN_ROOT=
RUN_BINDS=()
unmount_run() {  # an EXIT trap: runs after run() returned, so it reads the globals
  [[ -n $RUN_ROOT ]] || return 0
  local m
  for m in "${RUN_BINDS[@]}"; do  # once each: another run may have bound the same host path there too
    umount -l "$m" || true
  done
  for m in "$RUN_ROOT/e2e" "$RUN_ROOT/dev/shm" "$RUN_ROOT/proc"; do
    while mountpoint -q "$m"; do umount -l "$m" || break; done  # binds can be stacked
  done
  return 0
}

bind_host_paths() {  # DRAGGAN_CHROOT_BINDS, read-only, at the same paths inside the root
  local root=$1 path target
  local IFS=:
  for path in ${DRAGGAN_CHROOT_BINDS:-}; do
    [[ -n $path ]] || continue
    path=$(realpath -e "$path") || { echo "DRAGGAN_CHROOT_BINDS: no such path: $path" >&2; exit 2; }
    [[ $path != / ]] || { echo "DRAGGAN_CHROOT_BINDS: will not bind /" >&2; exit 2; }
    target=$root$path
    mkdir -p "$target"
    # stacked on any bind already there (another editor's run may use the same host path now): the same files
    RUN_BINDS=("$target" "${RUN_BINDS[@]}")  # unmounted before what they lie in
    mount --bind "$path" "$target"
    mount -o remount,bind,ro "$target"  # the chroot cannot change (or, by a stray rm -r, delete) the host's files
  done
}

run() {
  local root=$1 work=$2; shift 2
  exec 8>"$root.run.lock"
  flock 8  # one run at a time per chroot: they share /e2e
  mkdir -p "$root/e2e"
  RUN_ROOT=$root
  trap unmount_run EXIT
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev/shm" || mount -t tmpfs -o size=1g tmpfs "$root/dev/shm"
  while mountpoint -q "$root/e2e"; do umount -l "$root/e2e" || break; done  # stale binds of interrupted runs
  mount --bind "$work" "$root/e2e"
  bind_host_paths "$root"
  chroot "$root" env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"
}

case ${1:-} in
  ensure) shift; ensure "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
