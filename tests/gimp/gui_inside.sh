#!/bin/bash
# GUI check, run INSIDE the GIMP chroot by gimp_chroot_run.sh's caller (tests/test_gimp_e2e.py):
# real `gimp` under Xvfb runs gui_driver.py, which opens DragGAN Drag's dialog; this script waits
# for the dialog, screenshots it, presses Return (OK), then, once the driver says the result is in,
# presses Ctrl+Z once in the image window; then presses OK on a second drag's dialog, and while
# that drag is held at the daemon's test gate, looks at the image through gui_observer.py (a second
# `gimp -b` hands it to this GIMP over D-Bus, so it runs while the driver waits for the drag) and
# presses Stop and keep in the drag's window; finally clicks GIMP's Cancel button during a drag,
# and again during a plain layer's inversion: the driver holds those jobs at the daemon's test gate,
# and this script clicks once one is held (editor_gate.py), whatever the machine's speed. Needs xvfb
# xauth xdotool imagemagick dbus in the chroot.
# Env: E2E_DIR (the work dir, with profile/, gui_driver.py and editor_gate.py), DRAGGAN_URL, DRAGGAN_TOKEN,
# DRAGGAN_MODEL.
set -u
# a session bus of its own: gui_observer.py reaches this GIMP through it
[ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] || exec dbus-run-session -- bash "$0" "$@"
OUT=$E2E_DIR
export HOME=$E2E_DIR/home GIMP3_DIRECTORY=$E2E_DIR/profile XDG_CONFIG_HOME=$E2E_DIR/home/.config \
  XDG_CACHE_HOME=$E2E_DIR/home/.cache XDG_DATA_HOME=$E2E_DIR/home/.local/share
mkdir -p "$HOME"
exec 5>"$OUT/displaynum"  # Xvfb picks a free display: X sockets are shared with the host network namespace
Xvfb -displayfd 5 -screen 0 1280x900x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
XPID=$!
# Xvfb writes its display number once it accepts clients; on a loaded machine that can take many seconds
for _ in $(seq 1 480); do [ -s "$OUT/displaynum" ] && break; sleep 0.25; done
[ -s "$OUT/displaynum" ] || { echo "Xvfb did not start within 120 s"; cat "$OUT/xvfb.log"; exit 2; }
export DISPLAY=:$(cat "$OUT/displaynum")
gimp -s --batch-interpreter=python-fu-eval -b "exec(open('$E2E_DIR/gui_driver.py').read())" --quit \
  >"$OUT/gimp.log" 2>&1 &
GPID=$!
gate() { python3 "$E2E_DIR/editor_gate.py" "$DRAGGAN_URL" "$@"; }
zoom_each_new_image() {  # the driver asks after showing an image: 200 % (key 2 on the canvas), for the pictures
  local IMG
  while kill -0 $GPID 2>/dev/null; do
    if [ -e "$OUT/zoom_request" ]; then
      sleep 0.7
      IMG=$(xdotool search --name 'GIMP$' 2>/dev/null | tail -1)
      [ -n "$IMG" ] && { xdotool windowfocus --sync "$IMG"; sleep 0.3; xdotool key 2; sleep 0.5; }
      rm -f "$OUT/zoom_request"
    fi
    sleep 0.2
  done
}
zoom_each_new_image &
click_cancel() {  # MARKER PREFIX: once the driver made MARKER, click Cancel in the newest image window
  local marker=$1 prefix=$2 W X Y WIDTH HEIGHT SCREEN BAND BW=0 BH BX BY
  for _ in $(seq 1 120); do [ -e "$OUT/$marker" ] && break; sleep 0.5; done
  sleep 0.7  # the window shows the new image
  W=$(xdotool search --name 'GIMP$' 2>/dev/null | tail -1)
  eval "$(xdotool getwindowgeometry --shell "$W")"
  import -window root "$OUT/${prefix}before_cancel.png"
  touch "$OUT/${prefix}before_taken"  # the driver starts the job now; it stops at the test gate
  gate wait-held 120 || echo "no job reached the test gate"
  # the status bar shows a progress bar and a Cancel button while the plug-in runs; find them as
  # what changed at the bottom of the image window, and click the right end (the button)
  BAND=$((Y + HEIGHT - 50))
  for _ in $(seq 1 20); do
    import -window root "$OUT/${prefix}during_drag.png"
    read -r BW BH BX BY <<<"$(convert "$OUT/${prefix}before_cancel.png" "$OUT/${prefix}during_drag.png" \
      -compose difference -composite -crop "${WIDTH}x50+${X}+${BAND}" +repage -threshold 3% -trim \
      -format '%w %h %X %Y' info:)"
    ((BW > 40)) && break
    sleep 0.5
  done
  echo "status bar change: ${BW}x${BH} at ${BX},${BY} (window ${WIDTH}x${HEIGHT}+${X}+${Y})"
  if ((BW > 40)); then
    xdotool mousemove --sync $((X + BX + BW - 20)) $((BAND + BY + BH / 2)) click 1
    echo "clicked Cancel (${prefix:-drag})"
  fi
  # the watchdog's cancel frees the held job; if it does not come, open the gate so the run ends
  # and the report shows the job was not cancelled (rather than GIMP hanging until the timeout)
  gate wait-released 30 || { echo "the job is still held after the click: opening the gate"; gate open; }
  sleep 2
  import -window root "$OUT/${prefix}after_cancel.png"
}
press_ok() {  # SHOT: wait for DragGAN Drag's dialog, screenshot it to SHOT, press OK; sets WID
  local i
  WID=
  for i in $(seq 1 90); do
    WID=$(xdotool search --name '^DragGAN Drag$' 2>/dev/null | head -1)
    [ -n "$WID" ] && break
    kill -0 $GPID 2>/dev/null || break
    sleep 1
  done
  echo "dialog window: ${WID:-none} after ${i}s"
  [ -n "$WID" ] || return 1
  sleep 1.5
  import -window root "$OUT/$1"
  xdotool windowfocus --sync "$WID"; sleep 0.3; xdotool key Return  # no window manager: windowfocus
}
observe() {  # NAME: look at the images until a preview layer is seen (or 60 looks); the last look goes to $OUT/NAME
  local i
  for i in $(seq 1 60); do
    rm -f "$OUT/observed.json"
    timeout 60 gimp --batch-interpreter=python-fu-eval -b "exec(open('$E2E_DIR/gui_observer.py').read())" \
      >>"$OUT/observer.log" 2>&1
    for _ in $(seq 1 100); do [ -e "$OUT/observed.json" ] && break; sleep 0.1; done  # the look may end after gimp -b
    grep -q '"seen": {' "$OUT/observed.json" 2>/dev/null && break
    sleep 1
  done
  echo "observer: $i look(s)"
  [ -e "$OUT/observed.json" ] && mv "$OUT/observed.json" "$OUT/$1"
}
stop_and_keep() {  # the drag held at the gate: look at the image, then press Stop and keep
  local LW=
  for _ in $(seq 1 120); do [ -e "$OUT/stop_phase" ] && break; sleep 0.5; done
  press_ok stop_dialog.png || return 1
  gate wait-held 120 || echo "no job reached the test gate"
  for _ in $(seq 1 120); do  # the drag's window shows the held step in its title
    LW=$(xdotool search --name '^DragGAN: Step 5/' 2>/dev/null | head -1)
    [ -n "$LW" ] && break
    sleep 0.5
  done
  echo "drag window at step 5: ${LW:-none}"
  [ -n "$LW" ] && xdotool getwindowgeometry "$LW"
  observe stop_observed.json
  [ -n "$LW" ] && xdotool windowraise "$LW"  # no window manager here to keep the drag's window on top
  sleep 0.3
  import -window root "$OUT/preview.png"
  if [ -n "$LW" ]; then
    xdotool windowfocus --sync "$LW"; sleep 0.3; xdotool key alt+s
    echo "pressed Stop and keep"
  fi
  gate wait-released 30 || { echo "the job is still held after Stop: opening the gate"; gate open; }
  sleep 2
  import -window root "$OUT/stopped.png"
}
fit_now() {  # a plain layer's drag held at the gate during its inversion: look at the fit, then "Drag now with this fit"
  local LW=
  for _ in $(seq 1 120); do [ -e "$OUT/fit_phase" ] && break; sleep 0.5; done
  press_ok fit_dialog.png || return 1
  gate wait-held 120 || echo "no job reached the test gate"
  for _ in $(seq 1 120); do  # the window's title follows the inversion's progress
    LW=$(xdotool search --name '^DragGAN: Fitting' 2>/dev/null | head -1)
    [ -n "$LW" ] && break
    sleep 0.5
  done
  echo "fitting window: ${LW:-none}"
  observe fit_observed.json
  [ -n "$LW" ] && xdotool windowraise "$LW"
  sleep 0.3
  import -window root "$OUT/fit_preview.png"
  if [ -n "$LW" ]; then
    xdotool windowfocus --sync "$LW"; sleep 0.3; xdotool key alt+d
    echo "pressed Drag now with this fit"
    for _ in $(seq 1 120); do  # the fitting ends and the drag starts (it waits at the gate's step too)
      xdotool search --name '^DragGAN: Fitting' >/dev/null 2>&1 || break
      sleep 0.5
    done
  fi
  gate open  # the drag goes on
}
WID=
press_ok dialog.png
if [ -n "$WID" ]; then
  for _ in $(seq 1 120); do [ -e "$OUT/ready_for_undo" ] && break; sleep 0.5; done
  import -window root "$OUT/after_drag.png"
  IMG=$(xdotool search --name 'GIMP$' 2>/dev/null | tail -1)
  echo "image window: ${IMG:-none}"
  if [ -n "$IMG" ]; then
    xdotool windowfocus --sync "$IMG"; sleep 0.3; xdotool key ctrl+z; sleep 0.5
  fi
  touch "$OUT/undo_pressed"
  sleep 1
  import -window root "$OUT/after_undo.png"
  stop_and_keep
  [ -e "$OUT/plain.png" ] && fit_now
  # Cancel during a drag on a second image, then during a plain layer's inversion on a third (the
  # driver skips that one without plain.png)
  click_cancel cancel_phase ""
  [ -e "$OUT/plain.png" ] && click_cancel invert_cancel_phase invert_
fi
for _ in $(seq 1 60); do kill -0 $GPID 2>/dev/null || break; sleep 1; done
kill $GPID 2>/dev/null
wait $GPID
echo "gimp rc=$?"
kill $XPID 2>/dev/null
[ -n "$WID" ]
