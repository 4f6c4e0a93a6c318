"""The e2e scenario with no daemon running (DRAGGAN_E2E_SCENARIO=local): the artist sets up, starts and uses
a local daemon from the docker alone, downloads a model and drags with it, then quits Krita. Environment:
DRAGGAN_E2E_PROGRAM   the daemon program (this repository's .venv/bin/draggan)
DRAGGAN_E2E_ARGS      its extra `draggan serve` arguments (--catalogue, --models, --device cpu)
DRAGGAN_E2E_PROJECT   a fake project folder whose scripts/bootstrap.sh prints lines and waits for a file
                      "go" in the folder (so the set-up is in progress when Cancel is pressed)
DRAGGAN_E2E_ZOO_MODEL the catalogue model the test's zoo serves; the zoo holds its answer part-way
                      until this scenario writes the file "release-zoo" next to the report
After the report is written the scenario quits Krita (File > Quit); the test then checks that the
daemon is gone and that the plug-in stopped it.
"""
import os
import signal

from krita import Krita
from PyQt5.QtCore import QMetaObject, Qt, QTimer
from PyQt5.QtWidgets import (QApplication, QCheckBox, QComboBox, QFileDialog, QLabel, QLineEdit, QMessageBox,
                             QPlainTextEdit, QProgressBar, QPushButton, QSpinBox)

from .scenario import OUT_DIR, check, show_docker


def visible_top(cls):
    return [t for t in QApplication.topLevelWidgets() if isinstance(t, cls) and t.isVisible()]


def local_scenario(self):
    """A generator like E2EExtension.scenario (self is the extension)."""
    k = Krita.instance()
    self.report["krita"] = k.version()
    self.quit_at_end = True
    yield from self.wait_for(lambda: k.activeWindow() is not None, 60)
    win = k.activeWindow()
    qwin = win.qwindow()
    qwin.resize(1500, 950)
    qwin.move(0, 0)
    yield 300
    from draggan_krita import extension, kritadoc
    ctl = extension.get_controller()
    local = ctl.local
    dock, w = show_docker(k)
    yield 200
    check(not local.running and ctl.state != ctl.CONNECTED, "a daemon before the artist started one",
          state=ctl.state)
    self.log("start", version=k.version(), state=ctl.state, local=local.status_text())

    # the less common settings: the daemon program and its extra arguments
    w(QCheckBox, "draggan_local_more").setChecked(True)
    program, args = w(QLineEdit, "draggan_local_program"), w(QLineEdit, "draggan_local_args")
    check(program.isVisible() and args.isVisible(), "More settings did not show the program and arguments")
    program.setText(os.environ["DRAGGAN_E2E_PROGRAM"])
    program.editingFinished.emit()
    args.setText(os.environ["DRAGGAN_E2E_ARGS"])
    args.editingFinished.emit()
    check(ctl.settings.daemon_command == os.environ["DRAGGAN_E2E_PROGRAM"], "the program setting was not stored")
    log_view = w(QPlainTextEdit, "draggan_local_log")
    project = os.environ["DRAGGAN_E2E_PROJECT"]
    setup_btn, setup_cancel = w(QPushButton, "draggan_local_setup"), w(QPushButton, "draggan_local_setup_cancel")

    def choose_project():
        # the button opens a modal folder dialog: click it from a timer, so this generator is not running
        # inside the dialog's own event loop, then answer the dialog
        QTimer.singleShot(0, setup_btn.click)
        yield from self.wait_for(lambda: visible_top(QFileDialog), 30)
        dialog = visible_top(QFileDialog)[0]
        dialog.setDirectory(project)
        yield 200
        QMetaObject.invokeMethod(dialog, "accept")
        yield 100

    # set-up, cancelled while its script runs: its lines are in the Log view
    yield from choose_project()
    yield from self.wait_for(lambda: "fake set-up: waiting" in log_view.toPlainText(), 60)
    check(local.busy == local.SETTING_UP and setup_cancel.isEnabled(), "set-up not running", busy=local.busy)
    check(ctl.settings.project_dir == os.path.abspath(project), "the project folder was not remembered",
          project_dir=ctl.settings.project_dir)
    self.log("setup_running", log=log_view.toPlainText(), status=w(QLabel, "draggan_local_status").text())
    setup_cancel.click()
    yield from self.wait_for(lambda: not local.busy, 60)
    self.log("setup_cancelled", message=ctl.last_message)
    check("cancelled" in ctl.last_message[0] and not ctl.last_message[1], "cancel not reported as such",
          message=ctl.last_message)
    check(not local.running, "a daemon started after a cancelled set-up")

    # set-up again, to its end; then the daemon starts (the configured program) and the docker connects
    with open(os.path.join(project, "go"), "w"):
        pass
    yield from choose_project()
    seen_log = set()

    def started():
        seen_log.update(log_view.toPlainText().splitlines())
        return (local.running and ctl.state == ctl.CONNECTED) or ctl.state == ctl.ERROR
    yield from self.wait_for(started, 240, 200)
    status = w(QLabel, "draggan_status").text()
    self.log("started", state=ctl.state, status=status, url=ctl.settings.url, local=local.status_text(),
             message=ctl.last_message, pid=local.daemon.pid, log=log_view.toPlainText()[-2000:])
    check(ctl.state == ctl.CONNECTED, "the docker did not connect to the local daemon", status=status,
          message=ctl.last_message)
    check("fake set-up: done" in seen_log, "the set-up's end was not shown in the Log", seen=sorted(seen_log)[:20])
    check(ctl.settings.url == local.daemon.url and w(QLineEdit, "draggan_url").text() == local.daemon.url,
          "the docker does not use the local daemon's URL", url=ctl.settings.url, daemon=local.daemon.url)
    check("listening on" in log_view.toPlainText(), "the daemon's output is not in the Log view")
    check(not w(QPushButton, "draggan_local_start").isEnabled() and w(QPushButton, "draggan_local_stop").isEnabled(),
          "Start/Stop buttons do not follow the running daemon")

    # the catalogue: the zoo's model, not downloaded
    model = os.environ["DRAGGAN_E2E_ZOO_MODEL"]
    combo = w(QComboBox, "draggan_model")
    idx = combo.findData(model)
    check(idx >= 0, "the zoo model is not offered", items=[combo.itemText(i) for i in range(combo.count())])
    combo.setCurrentIndex(idx)
    yield 100
    label = combo.itemText(idx)
    download_btn, download_cancel = w(QPushButton, "draggan_download"), w(QPushButton, "draggan_download_cancel")
    self.log("catalogue", label=label, items=[combo.itemText(i) for i in range(combo.count())])
    check("not downloaded" in label, "the model is not labelled as not downloaded", label=label)
    check(download_btn.isEnabled() and not download_cancel.isEnabled(), "Download/Cancel buttons wrong")

    # New image from a model not downloaded: told to download it first, no document
    ndocs = len(k.documents())
    w(QPushButton, "draggan_new_image").click()
    yield from self.wait_for(lambda: ctl.last_message[1], 30)
    self.log("not_downloaded", message=ctl.last_message)
    check("Download" in ctl.last_message[0] and model in ctl.last_message[0], "no 'download it first' message",
          message=ctl.last_message)
    check(len(k.documents()) == ndocs, "a document was made from a model not downloaded")

    def download():
        QTimer.singleShot(0, download_btn.click)
        yield from self.wait_for(lambda: visible_top(QMessageBox), 30)
        box = visible_top(QMessageBox)[0]
        text = box.text()
        box.button(QMessageBox.Yes).click()
        yield 100
        return text

    # Download: the licence first; the zoo holds the file part-way, so the progress is mid-way
    question = yield from download()
    check("Licence: e2e test licence" in question, "the licence was not shown before the download", text=question)
    bar, bar_text = w(QProgressBar, "draggan_progress"), w(QLabel, "draggan_progress_text")
    yield from self.wait_for(lambda: ctl.download is not None and ctl.download.status is not None
                             and (ctl.download.status.get("bytes_done") or 0) > 0, 60)
    yield 300
    self.log("downloading", status=ctl.download.status, bar=bar.value(), text=bar_text.text())
    check(0 < bar.value() < 100 and " of " in bar_text.text(), "no download progress shown", bar=bar.value(),
          text=bar_text.text())
    check(download_cancel.isEnabled() and not download_btn.isEnabled(), "Cancel not offered while downloading")
    # the picture for the docs: the docker's content, wider, without the test's paths
    w(QCheckBox, "draggan_local_more").setChecked(False)
    qwin.resizeDocks([dock], [420], Qt.Horizontal)
    yield 400
    dock.widget().widget().grab().save(os.path.join(OUT_DIR, "krita-daemon.png"))
    download_cancel.click()
    yield from self.wait_for(lambda: ctl.download is None, 60)
    self.log("download_cancelled", message=ctl.last_message, text=bar_text.text())
    check(not ctl.last_message[1] and "cancel" in ctl.last_message[0].lower(), "cancel not reported as such",
          message=ctl.last_message)
    with open(os.path.join(OUT_DIR, "release-zoo"), "w"):  # the test lets the zoo go on
        pass

    # Download again: it resumes, finishes, and the model is selected
    yield from self.wait_for(lambda: download_btn.isEnabled(), 30)
    yield from download()
    yield from self.wait_for(lambda: ctl.download is None, 120)
    yield from self.wait_for(lambda: combo.currentData() == model and "not downloaded" not in combo.currentText(), 30)
    self.log("downloaded", message=ctl.last_message, text=bar_text.text(), bar=bar.value(),
             label=combo.currentText())
    check(not ctl.last_message[1] and bar.value() == 100, "the download did not finish", message=ctl.last_message)

    # generate with it, place points, drag
    w(QSpinBox, "draggan_seed").setValue(3)
    w(QPushButton, "draggan_new_image").click()
    yield from self.wait_for(lambda: len(k.documents()) > ndocs and kritadoc.active_document() is not None
                             and win.activeView() is not None or ctl.last_message[1], 120)
    check(len(k.documents()) > ndocs, "no image from the downloaded model", message=ctl.last_message)
    yield 400
    doc = kritadoc.active_document()
    doc.setBatchmode(True)
    record = ctl.session_record(doc)
    check(record is not None and record.model == model, "the image is not from the downloaded model", record=record)
    pts = ctl.points_for(doc)
    pts.clear()
    pts.place(20.0, 22.0)
    pts.place(30.0, 28.0)
    ctl.points_edited()
    w(QSpinBox, "draggan_steps").setValue(3)
    w(QPushButton, "draggan_run").click()
    yield 100
    check(ctl.running(), "the drag did not start", message=ctl.last_message)
    yield from self.wait_for(lambda: not ctl.running(), 180)
    self.log("dragged", result=ctl.last_result, message=ctl.last_message)
    check(ctl.last_result and ctl.last_result.get("ok") and ctl.last_result.get("layer"), "the drag failed",
          result=ctl.last_result, message=ctl.last_message)

    # the daemon dies (killed from outside): the docker says so with its last output, the light turns red;
    # Start brings it back
    os.kill(local.daemon.pid, signal.SIGKILL)
    yield from self.wait_for(lambda: ctl.state == ctl.ERROR, 30)
    self.log("died", message=ctl.last_message, status=w(QLabel, "draggan_status").text())
    check(ctl.last_message[1] and "stopped unexpectedly" in ctl.last_message[0] and "SIGKILL" in ctl.last_message[0]
          and "Its last output:" in ctl.last_message[0] and "draggan.daemon" in ctl.last_message[0],
          "the death was not reported with the log", message=ctl.last_message)
    light = w(QLabel, "draggan_light").styleSheet()
    check("#e03030" in light, "the status light is not red", light=light)
    start_btn = w(QPushButton, "draggan_local_start")
    check(start_btn.isEnabled(), "Start not offered after the daemon died")
    start_btn.click()
    yield from self.wait_for(lambda: (local.running and ctl.state == ctl.CONNECTED) or ctl.state == ctl.ERROR, 240, 200)
    self.log("restarted", state=ctl.state, message=ctl.last_message, pid=local.daemon.pid)
    check(ctl.state == ctl.CONNECTED, "the daemon did not start again", message=ctl.last_message)
    self.report["daemon_pid"] = local.daemon.pid
    for d in k.documents():  # quitting must not ask to save them
        d.setModified(False)
    self.log("done")


def autostart_scenario(self):
    """DRAGGAN_E2E_SCENARIO=autostart: kritarc (written by the test) ticks "Start with Krita" and "Keep running
    after Krita quits": the daemon starts with Krita, kept, and the docker connects; Krita then quits and
    the daemon must go on (the test checks, then stops it)."""
    k = Krita.instance()
    self.report["krita"] = k.version()
    self.quit_at_end = True
    yield from self.wait_for(lambda: k.activeWindow() is not None, 60)
    from draggan_krita import extension
    ctl = extension.get_controller()
    local = ctl.local
    check(ctl.settings.start_with_krita and ctl.settings.keep_running, "the settings from kritarc were not read",
          settings=ctl.settings.to_dict())
    dock, _widget = show_docker(k)
    yield from self.wait_for(lambda: (local.running and ctl.state == ctl.CONNECTED) or ctl.state == ctl.ERROR,
                             240, 200)
    self.log("started_with_krita", state=ctl.state, message=ctl.last_message, local=local.status_text(),
             pid=local.daemon.pid, kept=local.daemon.kept, log_path=local.daemon.log_path)
    check(ctl.state == ctl.CONNECTED and ctl.settings.url == local.daemon.url, "not connected to the daemon "
          "started with Krita", message=ctl.last_message, url=ctl.settings.url)
    check(local.daemon.kept and "kept after Krita quits" in local.status_text(), "the daemon is not kept",
          status=local.status_text())
    check(dock.findChild(QCheckBox, "draggan_local_autostart").isChecked()
          and dock.findChild(QCheckBox, "draggan_local_keep").isChecked(), "the docker's boxes are not ticked")
    yield from self.wait_for(lambda: "listening on" in dock.findChild(QPlainTextEdit, "draggan_local_log")
                             .toPlainText(), 10)
    self.report["daemon_pid"] = local.daemon.pid
    self.log("done")
