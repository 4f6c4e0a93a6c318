"""The e2e scenario (see __init__.py). Environment:
DRAGGAN_E2E_OUT   report path (JSON; "ok": true = pass); screenshots go next to it
DRAGGAN_URL       the live daemon (read by the plug-in itself; started with its test gate)
DRAGGAN_E2E_DEAD  a URL where nothing listens (error path)
DRAGGAN_E2E_MODEL model name to generate with (default tiny)
DRAGGAN_E2E_INVERT_W  W projection steps of the real-layer scenario's inversion (default 400; it is
                  stopped early, after a few steps, through the docker's Stop button)
DRAGGAN_E2E_SCENARIO  "local" / "autostart": the scenarios without a running daemon (local_scenario.py),
                  which end by quitting Krita instead of leaving it with os._exit
Where the scenario acts or looks while a job runs (a preview, Stop, Cancel, the inversion's
progress), the job waits at the daemon's test gate (editor_gate.py, copied in by the test) until
the check is done, so it is in progress however fast the machine is.
"""
import faulthandler
import json
import os
import sys
import threading
import time
import traceback

from krita import Extension, Krita, Selection
from PyQt5.QtCore import QPoint, QProcess, QTimer
from PyQt5.QtWidgets import QPushButton, QSpinBox, QCheckBox, QComboBox, QLabel

from . import editor_gate as gate

T0 = time.monotonic()
OUT = os.environ.get("DRAGGAN_E2E_OUT", "")
DAEMON_URL = os.environ.get("DRAGGAN_URL", "")
OUT_DIR = os.path.dirname(os.path.abspath(OUT)) if OUT else "."


QUIT_WAIT_S = 60.0  # File > Quit: time for Krita to close (the plug-in stops its local daemon meanwhile)


class Check(AssertionError):
    pass


def check(cond, what, **data):
    if not cond:
        raise Check("%s %s" % (what, json.dumps(data, default=str)))


def show_docker(k):
    """The DragGAN docker, shown and raised (5.2 hides it at first), and a finder of its widgets by name."""
    docks = [d for d in k.dockers() if d.objectName() == "draggan_docker"]
    check(len(docks) >= 1, "DragGAN docker not registered", names=[d.objectName() for d in k.dockers()][:60])
    dock = docks[0]
    dock.show()
    dock.raise_()

    def widget(cls, name):
        found = dock.findChild(cls, name)
        check(found is not None, "docker widget missing", name=name)
        return found
    return dock, widget


class E2EExtension(Extension):
    def __init__(self, parent):
        super(E2EExtension, self).__init__(parent)
        self.report = {"ok": False, "steps": [], "python": sys.version.split()[0]}
        self.gen = None
        self.quit_at_end = False  # the scenario ends by quitting Krita (File > Quit), not by os._exit

    def setup(self):
        self._fh = open(OUT + ".stacks", "w")
        faulthandler.dump_traceback_later(float(os.environ.get("DRAGGAN_E2E_WATCHDOG", "170")), file=self._fh)

        def hook(t, v, tb):  # Krita's own hook opens a modal dialog: a hang in CI
            self.report["uncaught"] = "".join(traceback.format_exception(t, v, tb))
            self.finish(False)
        sys.excepthook = hook
        if os.environ.get("DRAGGAN_E2E_SCENARIO") == "local":
            from .local_scenario import local_scenario
            self.gen = local_scenario(self)
        elif os.environ.get("DRAGGAN_E2E_SCENARIO") == "autostart":
            from .local_scenario import autostart_scenario
            self.gen = autostart_scenario(self)
        else:
            self.gen = self.scenario()
        QTimer.singleShot(0, self.advance)

    def createActions(self, window):
        pass

    # -- runner ---------------------------------------------------------------------------------
    def advance(self):
        try:
            QTimer.singleShot(int(next(self.gen)), self.advance)
        except StopIteration:
            self.finish(True)
        except Exception:  # noqa: BLE001
            self.report["error"] = traceback.format_exc()
            self.finish(False)

    def log(self, step, **data):
        data.update(step=step, t=round(time.monotonic() - T0, 2))
        self.report["steps"].append(data)
        with open(OUT + ".partial", "w") as f:
            json.dump(self.report, f, indent=1, default=str)

    def finish(self, ok):
        self.report["ok"] = bool(ok) and "error" not in self.report and "uncaught" not in self.report
        self.report["t_finish"] = round(time.monotonic() - T0, 2)
        with open(OUT, "w") as f:
            json.dump(self.report, f, indent=1, default=str)
        sys.stdout.flush()
        sys.stderr.flush()
        if self.report["ok"] and self.quit_at_end:
            # quit as the artist does; if Krita has not ended after QUIT_WAIT_S (a dialog, a hang), exit 6
            timer = threading.Timer(QUIT_WAIT_S, lambda: os._exit(6))
            timer.daemon = True
            timer.start()
            QTimer.singleShot(0, Krita.instance().action("file_quit").trigger)
            return
        os._exit(0 if self.report["ok"] else 3)

    def wait_for(self, cond, timeout_s, step_ms=50):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if cond():
                return
            yield step_ms
        check(cond(), "timed out waiting", seconds=timeout_s)

    def undo_removes_result(self, doc, source, expected, src_before, step):
        """One Edit > Undo takes away the result layer `expected` and leaves the source's pixels as they were."""
        Krita.instance().action("edit_undo").trigger()
        yield 600
        names_undo = [n.name() for n in doc.topLevelNodes() if n.type() != "selectionmask"]
        self.log(step, layers=names_undo)
        check(expected not in names_undo and source.name() in names_undo, "one undo did not remove the result",
              layers=names_undo)
        check(bytes(source.pixelData(0, 0, doc.width(), doc.height())) == src_before, "undo changed the source")

    def follow_run(self, ctl, label, until, timeout_s, seen):
        """Yield to Qt until until() holds or timeout_s pass, adding what the docker shows meanwhile
        to seen: its progress texts ("texts") and the run's phases ("phases")."""
        end = time.monotonic() + timeout_s
        while True:
            seen["texts"].add(label.text())  # also the state that fulfils until(): nothing changes before the yield
            if ctl.job:
                seen["phases"].add(ctl.job.phase)
            if until() or time.monotonic() > end:
                return
            yield 100

    def run_process(self, args, timeout_s=10):
        p = QProcess()
        p.start(args[0], args[1:])
        yield from self.wait_for(lambda: p.state() == QProcess.NotRunning, timeout_s)
        self._last_proc_out = bytes(p.readAllStandardError()).decode(errors="replace")

    def screenshot(self, name):
        """Whole X screen (what the artist sees; includes the OpenGL canvas and the overlay)."""
        path = os.path.join(OUT_DIR, name)
        yield from self.run_process(["import", "-window", "root", path], 20)
        return path

    def xclick(self, canvas, wx, wy, button=1, drag_to=None):
        g = canvas.mapToGlobal(QPoint(int(round(wx)), int(round(wy))))
        cmd = ["xdotool", "mousemove", str(g.x()), str(g.y()), "sleep", "0.15"]
        if drag_to is None:
            cmd += ["click", str(button)]
        else:
            g2 = canvas.mapToGlobal(QPoint(int(round(drag_to[0])), int(round(drag_to[1]))))
            cmd += ["mousedown", str(button)]
            for n in range(1, 5):
                cmd += ["sleep", "0.04", "mousemove", str(int(g.x() + (g2.x() - g.x()) * n / 4)),
                        str(int(g.y() + (g2.y() - g.y()) * n / 4))]
            cmd += ["sleep", "0.05", "mouseup", str(button)]
        yield from self.run_process(cmd)
        yield 250

    # -- scenario ---------------------------------------------------------------------------------
    def scenario(self):
        k = Krita.instance()
        version = k.version()
        self.report["krita"] = version
        yield from self.wait_for(lambda: k.activeWindow() is not None, 60)
        win = k.activeWindow()
        qwin = win.qwindow()
        qwin.resize(1500, 950)
        qwin.move(0, 0)
        yield 300
        import draggan_krita
        from draggan_krita import extension, kritadoc, jobspec, points as points_mod
        ctl = extension.get_controller()
        tool = extension.get_tool()
        self.log("start", version=version, plugin_file=draggan_krita.__file__,
                 flake=hasattr(win.activeView(), "flakeToImageTransform") if win.activeView() else None)

        # actions and the default shortcut from draggan_krita.action
        act = k.action("draggan_tool")
        check(act is not None, "draggan_tool action missing")
        self.log("actions", shortcut=act.shortcut().toString(), run=k.action("draggan_run") is not None,
                 new=k.action("draggan_new_image") is not None)
        check(act.shortcut().toString() == "Ctrl+Alt+D", "default shortcut not applied",
              shortcut=act.shortcut().toString())

        # the docker: shown (hidden by default on 5.2), then connect
        dock, w = show_docker(k)
        yield 200
        w(QPushButton, "draggan_connect").click()
        yield from self.wait_for(lambda: ctl.state in (ctl.CONNECTED, ctl.ERROR), 30)
        status = w(QLabel, "draggan_status").text()
        self.log("connected", state=ctl.state, status=status, models=[m["name"] for m in ctl.models])
        check(ctl.state == ctl.CONNECTED, "could not connect", status=status)
        check("cpu" in status and ctl.health.get("version", "?") in status, "status lacks device/version",
              status=status)

        # new image from the model
        model = os.environ.get("DRAGGAN_E2E_MODEL", "tiny")
        combo = w(QComboBox, "draggan_model")
        idx = combo.findData(model)
        check(idx >= 0, "model not offered", items=[combo.itemText(i) for i in range(combo.count())])
        combo.setCurrentIndex(idx)
        w(QSpinBox, "draggan_seed").setValue(7)
        ndocs = len(k.documents())
        w(QPushButton, "draggan_new_image").click()
        yield from self.wait_for(lambda: len(k.documents()) > ndocs and kritadoc.active_document() is not None
                                 and win.activeView() is not None, 60)
        yield 400
        doc = kritadoc.active_document()
        doc.setBatchmode(True)  # no modal dialogs on save
        view = win.activeView()
        info = ctl.session_record(doc)
        source = doc.activeNode()
        W, H = doc.width(), doc.height()
        src_before = bytes(source.pixelData(0, 0, W, H))
        self.log("new_image", size=[W, H], session=info, layer=source.name(), name=doc.name(),
                 layers=[n.name() for n in doc.topLevelNodes()])
        check(info and info.session_id and info.model == model, "session annotation missing", info=info)
        check(any(b for b in src_before[0::4]), "generated layer is empty")

        # view: zoom in; on 5.2 also rotate and mirror (the flake transforms must follow)
        c = view.canvas()
        c.setZoomLevel(5.0)
        flake = kritadoc.has_flake_transforms(view)  # 5.2+: exact transforms; 5.1: the fallback
        c.setRotation(25.0)
        c.setMirror(True)
        yield 600
        canvas = kritadoc.canvas_widget()
        check(canvas is not None, "canvas widget not found")
        self.log("view", zoom=c.zoomLevel(), rotation=c.rotation(), mirror=c.mirror(), flake=flake,
                 canvas=[canvas.width(), canvas.height()])

        # ground truth for the mapping: the canvas shows layer pixel (x, y) where the transform says
        def mapping_match():
            t0 = kritadoc.image_to_widget(view, canvas)
            shot = canvas.grabFramebuffer() if hasattr(canvas, "grabFramebuffer") else canvas.grab().toImage()
            dpr = shot.width() / float(canvas.width())
            good = total = 0
            for y in range(4, H - 3, 5):
                for x in range(4, W - 3, 5):
                    wx, wy = t0.map(x, y)
                    px, py = int(wx * dpr), int(wy * dpr)
                    if not (0 <= px < shot.width() and 0 <= py < shot.height()):
                        continue
                    col = shot.pixelColor(px, py)
                    i = 4 * (y * W + x)
                    b, g, r = src_before[i], src_before[i + 1], src_before[i + 2]
                    total += 1
                    if abs(col.red() - r) + abs(col.green() - g) + abs(col.blue() - b) <= 30:
                        good += 1
            return good, total
        good, total = mapping_match()
        self.log("mapping_truth", canvas_class=canvas.metaObject().className(), matched=good, samples=total)
        check(total > 50 and good >= 0.9 * total, "the canvas does not show the image where the mapping says",
              matched=good, samples=total)

        # a throw-away click with the pan tool (Krita eats the first stroke after focus-in)
        for name in ("PanTool", "ZoomTool"):
            a = k.action(name)
            if a is not None:
                a.trigger()
                break
        yield 200
        yield from self.xclick(canvas, 8, canvas.height() - 8)

        # arm the Drag tool through its action (the docker's toggle follows)
        act.trigger()
        yield 300
        check(tool.armed, "tool did not arm")
        check(w(__import__("PyQt5.QtWidgets", fromlist=["QToolButton"]).QToolButton,
                "draggan_tool_toggle").isChecked(), "docker toggle not in sync")
        yield from self.wait_for(lambda: tool.transform is not None and tool.canvas is not None, 5)
        pts = ctl.points_for(doc)
        pts.clear()
        t = tool.transform
        tol = 1.6

        def near(p, q):
            return p is not None and abs(p[0] - q[0]) <= tol and abs(p[1] - q[1]) <= tol

        handle, target, moved_target = (22.0, 24.0), (36.0, 30.0), (38.0, 34.0)
        yield from self.xclick(canvas, *t.map(*handle))
        self.log("click_handle", pairs=pts.pairs, tool_log=tool.log[-3:])
        check(len(pts) == 1 and near(pts.pairs[0][0], handle), "handle not placed where clicked",
              pairs=pts.pairs, expected=handle)
        yield from self.xclick(canvas, *t.map(*target))
        check(near(pts.pairs[0][1], target), "target not placed where clicked", pairs=pts.pairs)
        # drag the target to a new place (select + move)
        yield from self.xclick(canvas, *t.map(*target), drag_to=t.map(*moved_target))
        check(len(pts) == 1 and near(pts.pairs[0][1], moved_target), "target not moved", pairs=pts.pairs)
        # a third point, removed with a right click
        yield from self.xclick(canvas, *t.map(50.0, 12.0))
        check(len(pts) == 2, "second handle not placed", pairs=pts.pairs)
        yield from self.xclick(canvas, *t.map(50.0, 12.0), button=3)
        check(len(pts) == 1, "right click did not remove the point", pairs=pts.pairs)
        # ... and one removed with the Delete key (which must not reach Krita's "clear layer")
        yield from self.xclick(canvas, *t.map(50.0, 40.0))
        check(len(pts) == 2 and pts.selected == (1, points_mod.HANDLE), "third handle not placed/selected",
              pairs=pts.pairs)
        yield from self.run_process(["xdotool", "key", "Delete"])
        yield 300
        check(len(pts) == 1, "Delete did not remove the selected point", pairs=pts.pairs)
        check(bytes(source.pixelData(0, 0, W, H)) == src_before, "a click or key changed the layer")
        ann = json.loads(kritadoc.read_annotation(doc, points_mod.ANNOTATION_POINTS))
        self.log("points", pairs=pts.pairs, annotation=ann, tool_log=tool.log)
        check(len(ann["pairs"]) == 1, "points annotation not updated", annotation=ann)
        # the overlay draws the handle in red at its place
        ov = tool.overlay
        check(ov is not None and ov.isVisible(), "overlay not shown")
        img = ov.grab().toImage()
        hx, hy = t.map(*pts.pairs[0][0])
        sx = img.width() / float(ov.width())
        col = img.pixelColor(int(hx * sx), int(hy * sx))
        self.log("overlay", pixel=[col.red(), col.green(), col.blue(), col.alpha()], at=[hx, hy])
        check(col.red() > 180 and col.green() < 90 and col.blue() < 90, "overlay has no red handle there",
              rgba=[col.red(), col.green(), col.blue(), col.alpha()])
        shot_path = yield from self.screenshot("krita-overlay.png")
        from PyQt5.QtGui import QImage
        g = canvas.mapToGlobal(QPoint(int(hx), int(hy)))
        QImage(shot_path).copy(max(g.x() - 330, 0), max(g.y() - 230, 0), 660, 460).save(
            os.path.join(OUT_DIR, "krita-overlay-crop.png"))

        # a feathered selection = the editable region
        sel = Selection()
        sel.select(10, 10, 40, 36, 255)
        sel.feather(3)
        doc.setSelection(sel)
        yield 200
        mask = bytes(doc.selection().pixelData(0, 0, W, H))
        soft = sum(1 for b in mask if 0 < b < 255)
        check(soft > 0, "selection not feathered")

        # parameters and Run
        w(QSpinBox, "draggan_steps").setValue(int(os.environ.get("DRAGGAN_E2E_STEPS", "5")))
        w(QSpinBox, "draggan_preview_every").setValue(2)
        progress_label = w(QLabel, "draggan_progress_text")
        with gate.holding(DAEMON_URL):  # the job waits after step 2 until its preview is shown
            w(QPushButton, "draggan_run").click()
            yield 100
            check(ctl.running(), "job did not start", message=ctl.last_message)
            yield from self.wait_for(lambda: not ctl.running() or ctl.job.preview_step, 90)
            saw_preview = ctl.running() and bool(ctl.job.preview_step)
        seen = {"texts": set(), "phases": set()}
        yield from self.follow_run(ctl, progress_label, lambda: not ctl.running(), 150, seen)
        check(not ctl.running(), "job did not finish in time", message=ctl.last_message)
        texts = seen["texts"]
        self.log("run", result=ctl.last_result, message=ctl.last_message, saw_preview=saw_preview,
                 progress_texts=sorted(texts)[:12], handles=pts.pairs)
        check(ctl.last_result and ctl.last_result.get("ok"), "run failed", result=ctl.last_result,
              message=ctl.last_message)
        check(ctl.status.get("preset") == "paper", "the first drag did not run with the published settings",
              status=ctl.status)
        yield 300
        doc.refreshProjection()
        doc.waitForDone()
        names = [n.name() for n in doc.topLevelNodes() if n.type() != "selectionmask"]
        expected = ctl.last_result["layer"]  # the shared client's result_layer_name (tests/test_workflow.py)
        check(expected.startswith("DragGAN drag (") and "steps" in expected, "result layer name", name=expected)
        result = doc.nodeByName(expected)
        check(result is not None, "no result layer", layers=names)
        check(names.index(expected) == names.index(source.name()) + 1, "result not right above source",
              layers=names)
        res = bytes(result.pixelData(0, 0, W, H))
        src_after = bytes(source.pixelData(0, 0, W, H))
        inside = [i for i in range(W * H) if mask[i] == 255]
        outside = [i for i in range(W * H) if mask[i] == 0]
        changed_inside = sum(1 for i in inside if res[4 * i:4 * i + 3] != src_before[4 * i:4 * i + 3])
        alpha_outside = max(res[4 * i + 3] for i in outside)
        self.log("result", layers=names, changed_inside=changed_inside, inside=len(inside),
                 alpha_outside=alpha_outside, source_unchanged=src_after == src_before,
                 tracked=pts.pairs, preview=saw_preview)
        check(src_after == src_before, "source layer was modified")
        check(changed_inside > len(inside) // 20, "result hardly differs inside the selection",
              changed=changed_inside, of=len(inside))
        check(alpha_outside == 0, "result layer covers pixels outside the selection", alpha=alpha_outside)
        check(saw_preview, "no preview was shown while running")
        w(QCheckBox, "draggan_advanced").setChecked(True)
        dock.setFloating(True)
        dock.resize(340, 900)
        dock.move(1240, 40)
        yield 400
        dock_img = dock.grab()
        dock_img.save(os.path.join(OUT_DIR, "krita-docker.png"))
        yield from self.screenshot("krita-result.png")

        # points are saved with the document and come back on reopening
        kra = os.path.join(OUT_DIR, "e2e.kra")
        if os.path.exists(kra):
            os.remove(kra)
        check(doc.saveAs(kra), "saveAs failed")
        doc2 = k.openDocument(kra)
        check(doc2 is not None, "reopen failed")
        doc2.setBatchmode(True)
        ann2 = json.loads(kritadoc.read_annotation(doc2, points_mod.ANNOTATION_POINTS) or "{}")
        info2 = ctl.session_record(doc2)
        result_id = ctl.last_result["layer_id"]
        kept = ctl.history(doc2).get(result_id)
        self.log("reopen", pairs=ann2.get("pairs"), session=info2, result_layer=result_id,
                 result_entry=kept and vars(kept), found=kritadoc.find_layer(doc2, result_id) is not None)
        check(ann2.get("pairs") and len(ann2["pairs"]) == 1, "points lost on save/reopen", ann=ann2)
        check(info2 and info2.session_id == info.session_id, "session lost on save/reopen")
        # the result layer keeps its id and its memory (its state, its tracked handles) in the .kra
        check(kritadoc.find_layer(doc2, result_id) is not None and kept is not None and kept.is_result
              and kept.record.state_id == ctl.last_result["state_id"], "the result layer's history lost on save/reopen")
        doc2.close()
        yield 300

        # one undo removes the result layer
        k.setActiveDocument(doc)
        yield 200
        yield from self.undo_removes_result(doc, source, expected, src_before, "undo")

        # a second Run continues from the tracked points; Stop keeps the state reached so far
        doc.setActiveNode(source)
        yield 200
        w(QSpinBox, "draggan_steps").setValue(200)
        presets = w(QComboBox, "draggan_preset")
        presets.setCurrentIndex(presets.findData("studio"))  # this drag runs with the studio settings
        check(ctl.settings.params["preset"] == "studio", "the chosen drag settings were not stored",
              params=ctl.settings.params)
        handles_before = [list(p) for p in pts.handles()]
        with gate.holding(DAEMON_URL):  # the drag waits after step 2 until Stop
            w(QPushButton, "draggan_run").click()
            yield 100
            check(ctl.running(), "second run did not start", message=ctl.last_message)
            yield from self.wait_for(lambda: not ctl.running() or (ctl.status is not None
                                                                   and ctl.status.get("step", 0) >= 2), 90)
            check(ctl.running(), "the drag to stop ended early", result=ctl.last_result)
            stop_btn = w(QPushButton, "draggan_stop")
            check(stop_btn.isEnabled(), "Stop disabled while running")
            stop_btn.click()
            yield from self.wait_for(lambda: not ctl.running(), 90)
        names2 = [n.name() for n in doc.topLevelNodes() if n.type() != "selectionmask"]
        self.log("stop", result=ctl.last_result, layers=names2, handles_before=handles_before,
                 handles_after=pts.handles())
        check(ctl.last_result and ctl.last_result.get("ok") and "stopped" in ctl.last_result["text"],
              "stopped run did not keep its result", result=ctl.last_result)
        check(ctl.status["step"] < 200, "stop did not stop early", step=ctl.status["step"])
        check(ctl.status.get("preset") == "studio", "the drag did not run with the chosen settings", status=ctl.status)
        presets.setCurrentIndex(presets.findData("paper"))  # the profile keeps it: later runs start published
        stopped = ctl.last_result["layer"]
        check("stopped" in stopped and stopped in names2, "no result layer after Stop", layers=names2)
        k.action("edit_undo").trigger()
        yield 500

        # model missing -> the daemon's message, no new document
        ndocs = len(k.documents())
        combo.setEditText("no-such-model")
        w(QPushButton, "draggan_new_image").click()
        yield from self.wait_for(lambda: ctl.last_message[1], 30)
        self.log("model_missing", message=ctl.last_message)
        check("no-such-model" in ctl.last_message[0], "unclear missing-model message", message=ctl.last_message)
        check(len(k.documents()) == ndocs, "a document was created for a missing model")
        k.setActiveDocument(doc)
        yield 300

        # error path: daemon down -> clear message, no layer added
        ctl.settings.url = os.environ["DRAGGAN_E2E_DEAD"]
        doc.setActiveNode(source)
        yield 200
        n_before = len([n for n in doc.topLevelNodes() if n.type() != "selectionmask"])
        ok = ctl.run()
        yield from self.wait_for(lambda: not ctl.running(), 30)
        yield 300
        msg, is_err = ctl.last_message
        n_after = len([n for n in doc.topLevelNodes() if n.type() != "selectionmask"])
        shown = w(QLabel, "draggan_message").text()
        self.log("daemon_down", started=ok, message=msg, error=is_err, shown=shown, layers_before=n_before,
                 layers_after=n_after)
        check(is_err and "cannot reach" in msg.lower() and ctl.settings.url in msg, "unclear error", message=msg)
        check(shown == msg, "docker does not show the error", shown=shown)
        check(n_after == n_before, "a layer was added although the daemon is down")
        dock.grab().save(os.path.join(OUT_DIR, "krita-docker-error.png"))
        # Escape on the canvas leaves the tool
        check(tool.armed, "tool should still be armed")
        qwin.activateWindow()
        canvas.setFocus()
        yield 200
        yield from self.run_process(["xdotool", "key", "Escape"])
        yield 300
        check(not tool.armed, "Escape did not disarm the tool")
        check(not act.isChecked(), "action still checked after disarming")
        ctl.settings.url = DAEMON_URL
        yield from self.layer_scenario(k, win, ctl, tool, act, w, src_before, W, H)
        from .history_scenario import history_scenario
        yield from history_scenario(self, k, win, ctl, tool, act, dock, w)
        if os.environ.get("DRAGGAN_E2E_TILTED"):
            from .align_scenario import align_scenario
            yield from align_scenario(self, k, win, ctl, tool, act, w)
        self.log("done")

    def layer_scenario(self, k, win, ctl, tool, act, w, picture, PW, PH):
        """A plain document the daemon did not generate (a painted background with the generated
        picture pasted off-centre): select a region, click points, Run -> inversion (progress, Stop
        keeps the best so far) -> drag -> a new layer changed inside the selection, source unchanged;
        one undo; a second Run reuses the saved session; Cancel ends a drag without a layer."""
        from draggan_krita import kritadoc
        DW, DH, OX, OY = 200, 150, 110, 60
        bg = bytearray(DW * DH * 4)
        for y in range(DH):
            for x in range(DW):
                i = 4 * (y * DW + x)
                bg[i:i + 4] = bytes(((x * 255) // DW, (y * 255) // DH, 90 + (x + y) % 40, 255))
        # a few random pixels in a corner: a new picture each run, so the daemon (shared by the runs on
        # 5.1 and 5.2) cannot answer with the session of an earlier run's identical layer
        bg[0:12] = bytes(b if (j + 1) % 4 else 255 for j, b in enumerate(os.urandom(12)))
        for y in range(PH):
            row = picture[4 * y * PW:4 * (y + 1) * PW]
            i = 4 * ((OY + y) * DW + OX)
            bg[i:i + 4 * PW] = bytes(row[j] if j % 4 != 3 else 255 for j in range(len(row)))
        ndocs = len(k.documents())
        doc, source = kritadoc.new_document(DW, DH, "plain picture", bytes(bg), "painted")
        doc.setBatchmode(True)
        yield from self.wait_for(lambda: len(k.documents()) > ndocs and kritadoc.active_document() is not None
                                 and kritadoc.same_document(kritadoc.active_document(), doc), 30)
        yield 400
        view = win.activeView()
        view.canvas().setZoomLevel(3.0)
        yield 500
        src_before = bytes(source.pixelData(0, 0, DW, DH))
        check(src_before == bytes(bg), "the painted picture was not written")
        check(ctl.session_record(doc) is None, "a plain document has a session annotation")
        if not tool.armed:
            act.trigger()
        yield from self.wait_for(lambda: tool.armed and tool.transform is not None and tool.canvas is not None
                                 and kritadoc.same_document(tool._doc, doc), 10)
        yield 300
        canvas, t = tool.canvas, tool.transform
        pts = ctl.points_for(doc)
        pts.clear()
        handle, target = (OX + 22.0, OY + 24.0), (OX + 30.0, OY + 30.0)

        def near(p, q):
            return p is not None and abs(p[0] - q[0]) <= 1.6 and abs(p[1] - q[1]) <= 1.6
        for _ in range(2):  # Krita may eat the first click after a new view gets the focus
            yield from self.xclick(canvas, *t.map(*handle))
            if len(pts):
                break
        check(len(pts) == 1 and near(pts.pairs[0][0], handle), "handle not placed on the plain document",
              pairs=pts.pairs, expected=handle, tool_log=tool.log[-3:])
        yield from self.xclick(canvas, *t.map(*target))
        check(near(pts.pairs[0][1], target), "target not placed on the plain document", pairs=pts.pairs)
        sel = Selection()
        sel.select(OX + 8, OY + 10, 36, 32, 255)
        sel.feather(2)
        doc.setSelection(sel)
        yield 200
        mask = bytes(doc.selection().pixelData(0, 0, DW, DH))
        self.log("layer_doc", size=[DW, DH], pairs=pts.pairs, selected=sum(1 for b in mask if b))

        # Run: the layer is sent for inversion; progress in the docker; Stop keeps the best so far
        combo = w(QComboBox, "draggan_model")
        combo.setCurrentIndex(combo.findData(os.environ.get("DRAGGAN_E2E_MODEL", "tiny")))
        w(QCheckBox, "draggan_advanced").setChecked(True)
        w(QSpinBox, "draggan_steps").setValue(int(os.environ.get("DRAGGAN_E2E_STEPS", "5")))
        w(QSpinBox, "draggan_preview_every").setValue(2)
        w(QSpinBox, "draggan_invert_w").setValue(int(os.environ.get("DRAGGAN_E2E_INVERT_W", "400")))
        w(QSpinBox, "draggan_invert_wplus").setValue(0)
        w(QSpinBox, "draggan_invert_pti").setValue(0)
        stop_btn, cancel_btn = w(QPushButton, "draggan_stop"), w(QPushButton, "draggan_cancel")
        progress_label = w(QLabel, "draggan_progress_text")
        seen = {"texts": set(), "phases": set()}
        # the inversion waits after step 2 until Stop; the drag after it waits there until the docker shows it
        with gate.holding(DAEMON_URL):
            w(QPushButton, "draggan_run").click()
            yield 100
            check(ctl.running(), "the layer run did not start", message=ctl.last_message)
            yield from self.wait_for(lambda: not ctl.running() or (ctl.job.phase == "invert" and ctl.status
                                                                   is not None and ctl.status.get("step", 0) >= 2), 90)
            check(ctl.running() and ctl.job.phase == "invert", "no inversion phase", message=ctl.last_message,
                  result=ctl.last_result)
            yield 300
            invert_text = progress_label.text()
            layers_inverting = [n.name() for n in doc.topLevelNodes()]
            check(cancel_btn.isEnabled() and stop_btn.isEnabled(), "Stop/Cancel disabled while inverting")
            stop_btn.click()
            seen["texts"].add(invert_text)
            yield from self.follow_run(ctl, progress_label, lambda: not ctl.running() or (
                ctl.job.phase == "drag" and ctl.job.id is not None), 90, seen)
        yield from self.follow_run(ctl, progress_label, lambda: not ctl.running(), 150, seen)
        texts, phases = seen["texts"], seen["phases"]
        check(not ctl.running(), "the layer run did not finish in time", message=ctl.last_message)
        res_info = ctl.last_result or {}
        self.log("layer_run", result=res_info, message=ctl.last_message, invert_text=invert_text,
                 progress_texts=sorted(texts)[:12], phases=sorted(p for p in phases if p),
                 layers_while_inverting=layers_inverting, handles=pts.pairs)
        check(res_info.get("ok"), "the layer run failed", result=res_info, message=ctl.last_message)
        inv = res_info.get("inversion") or {}
        check("Fitting the model to the layer" in invert_text and "PSNR" in invert_text, "no inversion progress shown",
              text=invert_text)
        check("DragGAN preview (fit)" in layers_inverting, "no preview layer while inverting",
              layers=layers_inverting)
        check(inv.get("reason") == "stopped" and inv.get("psnr"), "Stop did not end the inversion early", inv=inv)
        check("drag" in phases, "no drag after the inversion", phases=sorted(p for p in phases if p))
        info = ctl.session_record(doc)
        check(info is not None and info.origin == "layer" and info.session_id == res_info.get("session"),
              "layer session not saved with the document", info=info)
        doc.refreshProjection()
        doc.waitForDone()
        names = [n.name() for n in doc.topLevelNodes() if n.type() != "selectionmask"]
        expected = res_info.get("layer")
        result = doc.nodeByName(expected) if expected else None
        check(result is not None, "no result layer", layers=names, expected=expected)
        check(names.index(expected) == names.index(source.name()) + 1, "result not right above source", layers=names)
        res = bytes(result.pixelData(0, 0, DW, DH))
        src_after = bytes(source.pixelData(0, 0, DW, DH))
        inside = [i for i in range(DW * DH) if mask[i] == 255]
        changed_inside = sum(1 for i in inside
                             if res[4 * i + 3] and res[4 * i:4 * i + 3] != src_before[4 * i:4 * i + 3])
        ch = res_info.get("changed") or {}
        outside_rect = [i for i in range(DW * DH) if not (ch.get("x", 0) <= i % DW < ch.get("x", 0) + ch.get("width", 0)
                                                           and ch.get("y", 0) <= i // DW < ch.get("y", 0)
                                                           + ch.get("height", 0))]
        alpha_outside_rect = max(res[4 * i + 3] for i in outside_rect)
        not_selected_differs = sum(1 for i in range(DW * DH) if mask[i] == 0 and res[4 * i + 3]
                                   and res[4 * i:4 * i + 4] != src_before[4 * i:4 * i + 4])
        self.log("layer_result", layers=names, changed=ch, changed_inside=changed_inside, inside=len(inside),
                 alpha_outside_rect=alpha_outside_rect, not_selected_differs=not_selected_differs,
                 source_unchanged=src_after == src_before, inversion=inv)
        check(src_after == src_before, "source layer was modified")
        check(changed_inside > len(inside) // 4, "result hardly differs inside the selection",
              changed=changed_inside, of=len(inside))
        check(alpha_outside_rect == 0, "result layer has pixels outside the changed rectangle")
        check(not_selected_differs == 0, "result differs from the source outside the selection",
              n=not_selected_differs)
        yield from self.screenshot("krita-layer-result.png")

        # one undo removes the result layer
        yield from self.undo_removes_result(doc, source, expected, src_before, "layer_undo")

        # a second Run drags the saved session directly (no new inversion)
        doc.setActiveNode(source)
        yield 200
        w(QPushButton, "draggan_run").click()
        yield 100
        check(ctl.running(), "second layer run did not start", message=ctl.last_message)
        yield from self.wait_for(lambda: not ctl.running(), 120)
        again = ctl.last_result or {}
        self.log("layer_rerun", result=again, message=ctl.last_message)
        check(again.get("ok") and again.get("inversion") is None and again.get("session") == info.session_id,
              "second Run did not reuse the saved session", result=again)
        check(doc.nodeByName(again["layer"]) is not None, "no result layer after the second Run")
        k.action("edit_undo").trigger()
        yield 500

        # Cancel during a drag: no layer, a clear message
        doc.setActiveNode(source)
        w(QSpinBox, "draggan_steps").setValue(300)
        yield 200
        n_before = len([n for n in doc.topLevelNodes() if n.type() != "selectionmask"])
        with gate.holding(DAEMON_URL):  # the drag waits after step 2 until Cancel
            w(QPushButton, "draggan_run").click()
            yield from self.wait_for(lambda: not ctl.running() or (ctl.status is not None
                                                                   and ctl.status.get("step", 0) >= 2), 90)
            check(ctl.running(), "the drag to cancel ended early", result=ctl.last_result)
            cancel_btn.click()
            yield from self.wait_for(lambda: not ctl.running(), 60)
        yield 300
        n_after = len([n for n in doc.topLevelNodes() if n.type() != "selectionmask"])
        self.log("layer_cancel", result=ctl.last_result, message=ctl.last_message, layers_before=n_before,
                 layers_after=n_after)
        check(ctl.last_result and ctl.last_result.get("cancelled"), "Cancel did not cancel", result=ctl.last_result)
        check(n_after == n_before, "Cancel left a layer behind")
        check(bytes(source.pixelData(0, 0, DW, DH)) == src_before, "the source changed")
        act.trigger()
        yield 200
