"""The "DragGAN" docker (Settings > Dockers > DragGAN): widgets bound to the controller."""
from krita import DockWidget
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                             QLabel, QLineEdit, QListWidget, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
                             QScrollArea, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from .draggan_client import catalogue as cat
from .draggan_client.workflow import PRESETS, PRESETS_HELP

LIGHT = {"connected": "#2eb82e", "connecting": "#e6b800", "error": "#e03030", "disconnected": "#888888"}
LOG_REFRESH_MS = 500  # the Log view follows the daemon's (or the set-up's) output while it runs


def _spin(lo, hi, value, decimals=None, step=None, special=None, name=None):
    w = QDoubleSpinBox() if decimals is not None else QSpinBox()
    if decimals is not None:
        w.setDecimals(decimals)
    w.setRange(lo, hi)
    if step:
        w.setSingleStep(step)
    if special:
        w.setSpecialValueText(special)
    w.setValue(value if value is not None else lo)
    if name:
        w.setObjectName(name)
    return w


class DragGANDocker(DockWidget):
    def __init__(self):
        super(DragGANDocker, self).__init__()
        from .extension import get_controller
        self.setWindowTitle("DragGAN")
        self.setObjectName("draggan_docker_widget")
        self.ctl = get_controller()
        s = self.ctl.settings
        root = QWidget()
        lay = QVBoxLayout(root)
        lay.setContentsMargins(4, 4, 4, 4)

        lay.addWidget(self._local_group(s))

        # connection
        box = QGroupBox("Daemon")
        form = QFormLayout(box)
        self.url = QLineEdit(s.url)
        self.url.setObjectName("draggan_url")
        self.url.setToolTip("Address of `draggan serve`, e.g. http://127.0.0.1:8765 or http://gpu-box:8765")
        self.token = QLineEdit(s.token)
        self.token.setObjectName("draggan_token")
        self.token.setEchoMode(QLineEdit.Password)
        self.token.setPlaceholderText("(none: local daemon)")
        form.addRow("URL", self.url)
        form.addRow("Token", self.token)
        row = QHBoxLayout()
        self.light = QLabel()
        self.light.setFixedSize(14, 14)
        self.light.setObjectName("draggan_light")
        self.status = QLabel("Not connected")
        self.status.setObjectName("draggan_status")
        self.status.setWordWrap(True)
        self.connect_btn = QPushButton("Connect")
        self.connect_btn.setObjectName("draggan_connect")
        row.addWidget(self.light)
        row.addWidget(self.status, 1)
        row.addWidget(self.connect_btn)
        form.addRow(row)
        lay.addWidget(box)

        # model + new image
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.model = QComboBox()
        self.model.setObjectName("draggan_model")
        self.model.setEditable(True)
        if s.model:
            self.model.addItem(s.model)
        self.seed = _spin(0, 2 ** 31 - 1, s.seed, name="draggan_seed")
        form.addRow("Model", self.model)
        row = QHBoxLayout()
        self.download_btn = QPushButton("Download")
        self.download_btn.setObjectName("draggan_download")
        self.download_btn.setToolTip("Download the chosen model into the daemon's models folder (you are shown its "
                                     "licence first).")
        self.download_cancel_btn = QPushButton("Cancel")
        self.download_cancel_btn.setObjectName("draggan_download_cancel")
        self.download_cancel_btn.setToolTip("Stop the download; the part downloaded so far is kept, and the next "
                                            "Download goes on from there.")
        row.addWidget(self.download_btn)
        row.addWidget(self.download_cancel_btn)
        row.addStretch(1)
        form.addRow(row)
        form.addRow("Seed", self.seed)
        self.new_btn = QPushButton("New image from model")
        self.new_btn.setObjectName("draggan_new_image")
        self.new_btn.setToolTip("Generate the seed's picture as a new document; it can be dragged right away.")
        form.addRow(self.new_btn)
        lay.addWidget(box)

        # tool + points
        box = QGroupBox("Points")
        v = QVBoxLayout(box)
        self.tool_btn = QToolButton()
        self.tool_btn.setObjectName("draggan_tool_toggle")
        self.tool_btn.setText("Drag tool")
        self.tool_btn.setCheckable(True)
        self.tool_btn.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.tool_btn.setToolTip("Arm the Drag tool (Ctrl+Alt+D): click a handle, then its target; drag points to "
                                 "move them; right-click or Delete removes; Esc leaves the tool.")
        self.reset_btn = QPushButton("Reset points")
        self.reset_btn.setObjectName("draggan_reset")
        row = QHBoxLayout()
        row.addWidget(self.tool_btn)
        row.addStretch(1)
        row.addWidget(self.reset_btn)
        v.addLayout(row)
        self.align_btn = QToolButton()
        self.align_btn.setObjectName("draggan_align")
        self.align_btn.setText("Align")
        self.align_btn.setCheckable(True)
        self.align_btn.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.align_btn.setToolTip("Frame a photo the way the model was trained: click the left eye, the right eye, "
                                  "the left and the right mouth corner (left = on the image's left). The square "
                                  "shows what the model sees; drag a landmark to move it.")
        self.align_clear_btn = QPushButton("Clear alignment")
        self.align_clear_btn.setObjectName("draggan_align_clear")
        row = QHBoxLayout()
        row.addWidget(self.align_btn)
        row.addStretch(1)
        row.addWidget(self.align_clear_btn)
        v.addLayout(row)
        self.align_text = QLabel("")
        self.align_text.setObjectName("draggan_align_text")
        self.align_text.setWordWrap(True)
        v.addWidget(self.align_text)
        self.point_list = QListWidget()
        self.point_list.setObjectName("draggan_points")
        self.point_list.setMaximumHeight(90)
        v.addWidget(self.point_list)
        hint = QLabel("Editable region: the selection (soft edges kept); no selection = whole layer.")
        hint.setWordWrap(True)
        v.addWidget(hint)
        lay.addWidget(box)

        # parameters
        box = QGroupBox("Parameters")
        form = QFormLayout(box)
        p = s.params
        self.steps = _spin(1, 2000, p["steps"], name="draggan_steps")
        self.mask_lambda = _spin(0.0, 10000.0, p["mask_lambda"], decimals=1, step=1.0, name="draggan_mask_lambda")
        self.preset = QComboBox()
        self.preset.setObjectName("draggan_preset")
        for name, label in PRESETS:
            self.preset.addItem(label, name)
        self.preset.setCurrentIndex(max(0, self.preset.findData(p["preset"])))
        self.preset.setToolTip(PRESETS_HELP)
        form.addRow("Steps", self.steps)
        form.addRow("Mask strength (lambda)", self.mask_lambda)
        form.addRow("Drag settings", self.preset)
        self.adv_toggle = QCheckBox("Advanced")
        self.adv_toggle.setObjectName("draggan_advanced")
        form.addRow(self.adv_toggle)
        self.adv = QWidget()
        af = QFormLayout(self.adv)
        af.setContentsMargins(0, 0, 0, 0)
        self.r1 = _spin(0.0, 64.0, p["r1"] or 0.0, decimals=1, step=0.5, special="auto", name="draggan_r1")
        self.r2 = _spin(0, 128, p["r2"] or 0, special="auto", name="draggan_r2")
        self.lr = _spin(0.0, 1.0, p["learning_rate"] or 0.0, decimals=4, step=0.0005, special="model default",
                        name="draggan_lr")
        self.w_layers = _spin(1, 64, p["w_layers"], name="draggan_w_layers")
        self.preview_every = _spin(0, 1000, p["preview_every"], special="off", name="draggan_preview_every")
        af.addRow("Motion radius r1", self.r1)
        af.addRow("Tracking radius r2", self.r2)
        af.addRow("Learning rate", self.lr)
        af.addRow("W+ layers optimised", self.w_layers)
        af.addRow("Preview every n steps", self.preview_every)
        # inversion (layers the daemon did not generate): steps per stage; "auto" = the daemon's default
        self.invert_w = _spin(0, 2000, p["invert_w"] or 0, special="auto", name="draggan_invert_w")
        self.invert_wplus = _spin(-1, 2000, -1 if p["invert_wplus"] is None else p["invert_wplus"], special="auto",
                                  name="draggan_invert_wplus")
        self.invert_pti = _spin(-1, 2000, -1 if p["invert_pti"] is None else p["invert_pti"], special="auto",
                                name="draggan_invert_pti")
        for spin, tip in ((self.invert_w, "W projection steps"), (self.invert_wplus, "W+ projection steps (0 skips)"),
                          (self.invert_pti, "pivotal tuning steps (0 skips)")):
            spin.setToolTip("Inversion of a layer the daemon did not generate: %s; auto = the daemon's default "
                            "for the model and device." % tip)
        af.addRow("Inversion steps W", self.invert_w)
        af.addRow("Inversion steps W+", self.invert_wplus)
        af.addRow("Inversion steps PTI", self.invert_pti)
        form.addRow(self.adv)
        self.adv.setVisible(False)
        lay.addWidget(box)

        # run
        row = QHBoxLayout()
        self.run_btn = QPushButton("Run")
        self.run_btn.setObjectName("draggan_run")
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setObjectName("draggan_stop")
        self.stop_btn.setToolTip("End after the current step and keep the edit so far (while inverting a layer: "
                                 "keep the best inversion so far and drag).")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setObjectName("draggan_cancel")
        self.cancel_btn.setToolTip("End without a result; the daemon's session goes back to before the drag.")
        row.addWidget(self.run_btn)
        row.addWidget(self.stop_btn)
        row.addWidget(self.cancel_btn)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.reset_original_btn = QPushButton("Reset to original")
        self.reset_original_btn.setObjectName("draggan_reset_original")
        self.reset_original_btn.setToolTip("Forget the drags of the selected layer's picture (an inverted layer keeps "
                                           "its inversion): its original layer is selected with your original "
                                           "handles, and the next drag starts from the original. Result layers stay.")
        row.addWidget(self.reset_original_btn)
        row.addStretch(1)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setObjectName("draggan_progress")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress_text = QLabel("")
        self.progress_text.setObjectName("draggan_progress_text")
        lay.addWidget(self.progress)
        lay.addWidget(self.progress_text)
        self.msg = QLabel("")
        self.msg.setObjectName("draggan_message")
        self.msg.setWordWrap(True)
        self.msg.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.msg)
        lay.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(root)
        self.setWidget(scroll)

        # wiring
        self.connect_btn.clicked.connect(self._connect)
        self.model.currentIndexChanged.connect(self._model_chosen)
        self.download_btn.clicked.connect(self._download)
        self.download_cancel_btn.clicked.connect(self.ctl.cancel_download)
        self.url.editingFinished.connect(self._store)
        self.token.editingFinished.connect(self._store)
        self.new_btn.clicked.connect(self._new_image)
        self.tool_btn.toggled.connect(self._toggle_tool)
        self.reset_btn.clicked.connect(self.ctl.reset_points)
        self.align_btn.toggled.connect(self.ctl.set_align_mode)
        self.align_clear_btn.clicked.connect(self.ctl.clear_alignment)
        self.run_btn.clicked.connect(self._run)
        self.stop_btn.clicked.connect(self.ctl.stop)
        self.cancel_btn.clicked.connect(self.ctl.cancel)
        self.reset_original_btn.clicked.connect(self.ctl.reset_to_original)
        self.adv_toggle.toggled.connect(self.adv.setVisible)
        self.preset.currentIndexChanged.connect(self._store)
        for w in (self.steps, self.mask_lambda, self.r1, self.r2, self.lr, self.w_layers, self.preview_every,
                  self.invert_w, self.invert_wplus, self.invert_pti):
            w.valueChanged.connect(self._store)
        self.ctl.connection_changed.connect(self._show_connection)
        self.ctl.points_changed.connect(self._show_points)
        self.ctl.job_changed.connect(self._show_job)
        self.ctl.message.connect(self._show_message)
        self.ctl.armed_changed.connect(self._show_armed)
        self.ctl.local.changed.connect(self._show_local)
        self._show_local()
        self._show_connection()
        self._show_job()
        if self.ctl.last_message[0]:
            self._show_message(*self.ctl.last_message)

    def _local_group(self, s):
        """The "Local daemon" group: start, stop and set up the daemon on this machine, and its log."""
        box = QGroupBox("Local daemon")
        v = QVBoxLayout(box)
        self.local_status = QLabel("Not running")
        self.local_status.setObjectName("draggan_local_status")
        self.local_status.setWordWrap(True)
        v.addWidget(self.local_status)
        row = QHBoxLayout()
        self.local_start_btn = QPushButton("Start local daemon")
        self.local_start_btn.setObjectName("draggan_local_start")
        self.local_start_btn.setToolTip("Start `draggan serve` on this computer and connect to it.")
        self.local_stop_btn = QPushButton("Stop")
        self.local_stop_btn.setObjectName("draggan_local_stop")
        row.addWidget(self.local_start_btn)
        row.addWidget(self.local_stop_btn)
        v.addLayout(row)
        row = QHBoxLayout()
        self.local_setup_btn = QPushButton("Set up local daemon\u2026")
        self.local_setup_btn.setObjectName("draggan_local_setup")
        self.local_setup_btn.setToolTip("Choose the folder you unpacked the DragGAN project into; its set-up "
                                        "installs the daemon there (a large download: torch), then starts it.")
        self.local_setup_cancel_btn = QPushButton("Cancel")
        self.local_setup_cancel_btn.setObjectName("draggan_local_setup_cancel")
        self.local_setup_cancel_btn.setToolTip("Stop the set-up.")
        row.addWidget(self.local_setup_btn)
        row.addWidget(self.local_setup_cancel_btn)
        v.addLayout(row)
        self.local_autostart = QCheckBox("Start with Krita")
        self.local_autostart.setObjectName("draggan_local_autostart")
        self.local_autostart.setToolTip("Start the local daemon when Krita starts, unless a daemon already answers "
                                        "at the URL below.")
        self.local_autostart.setChecked(s.start_with_krita)
        self.local_keep = QCheckBox("Keep running after Krita quits")
        self.local_keep.setObjectName("draggan_local_keep")
        self.local_keep.setToolTip("The daemon goes on when Krita quits (takes effect at its next start).")
        self.local_keep.setChecked(s.keep_running)
        v.addWidget(self.local_autostart)
        v.addWidget(self.local_keep)
        self.local_more = QCheckBox("More settings")
        self.local_more.setObjectName("draggan_local_more")
        v.addWidget(self.local_more)
        self.local_adv = QWidget()
        form = QFormLayout(self.local_adv)
        form.setContentsMargins(0, 0, 0, 0)
        self.local_project = QLineEdit(s.project_dir)
        self.local_project.setObjectName("draggan_local_project")
        self.local_project.setPlaceholderText("(chosen by Set up local daemon)")
        self.local_project.setToolTip("The folder the DragGAN project was unpacked into; its .venv/bin/draggan is "
                                      "the daemon program.")
        self.local_program = QLineEdit(s.daemon_command)
        self.local_program.setObjectName("draggan_local_program")
        self.local_program.setPlaceholderText("(the project's own draggan)")
        self.local_program.setToolTip("The draggan program to run, if not the project folder's .venv/bin/draggan.")
        self.local_args = QLineEdit(s.extra_args)
        self.local_args.setObjectName("draggan_local_args")
        self.local_args.setPlaceholderText("e.g. --device cuda --models /path/to/models")
        self.local_args.setToolTip("More `draggan serve` arguments, e.g. --catalogue studio.json --models DIR "
                                   "--device cuda.")
        form.addRow("Project folder", self.local_project)
        form.addRow("Program", self.local_program)
        form.addRow("Extra arguments", self.local_args)
        self.local_adv.setVisible(False)
        v.addWidget(self.local_adv)
        self.local_log = QPlainTextEdit()
        self.local_log.setObjectName("draggan_local_log")
        self.local_log.setReadOnly(True)
        self.local_log.setMaximumBlockCount(500)
        self.local_log.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.local_log.setFixedHeight(110)
        self.local_log.setPlaceholderText("Log: the daemon's output")
        v.addWidget(self.local_log)
        self._log_shown = None
        self._log_timer = QTimer(self)
        self._log_timer.setInterval(LOG_REFRESH_MS)
        self._log_timer.timeout.connect(self._show_log)

        self.local_start_btn.clicked.connect(self._local_start)
        self.local_stop_btn.clicked.connect(self.ctl.local.stop)
        self.local_setup_btn.clicked.connect(self._local_set_up)
        self.local_setup_cancel_btn.clicked.connect(self.ctl.local.cancel_set_up)
        self.local_more.toggled.connect(self.local_adv.setVisible)
        for w in (self.local_autostart, self.local_keep):
            w.toggled.connect(self._store)
        for w in (self.local_project, self.local_program, self.local_args):
            w.editingFinished.connect(self._store)
        return box

    # -- GUI -> controller ---------------------------------------------------------------------------
    def _store(self, *_):
        self.ctl.settings.update({
            "daemon_command": self.local_program.text(), "project_dir": self.local_project.text(),
            "extra_args": self.local_args.text(), "keep_running": self.local_keep.isChecked(),
            "start_with_krita": self.local_autostart.isChecked(),
            "url": self.url.text(), "token": self.token.text(), "model": self._model_name(), "seed": self.seed.value(),
            "params": {"steps": self.steps.value(), "mask_lambda": self.mask_lambda.value(),
                       "r1": self.r1.value() or None, "r2": self.r2.value() or None,
                       "learning_rate": self.lr.value() or None, "w_layers": self.w_layers.value(),
                       "preview_every": self.preview_every.value(), "preset": self.preset.currentData(),
                       "invert_w": self.invert_w.value() or None,
                       "invert_wplus": self.invert_wplus.value() if self.invert_wplus.value() >= 0 else None,
                       "invert_pti": self.invert_pti.value() if self.invert_pti.value() >= 0 else None}})
        self.ctl.save_settings()

    def _model_name(self):
        """The chosen model's name; a typed name that is not in the list is taken as it is."""
        text = self.model.currentText().strip()
        idx = self.model.findText(text)
        if idx >= 0 and self.model.itemData(idx):
            return self.model.itemData(idx)
        return text

    def _connect(self):
        self._store()
        self.ctl.connect_daemon()

    def _local_start(self):
        self._store()
        self.ctl.local.start()

    def _local_set_up(self):
        self._store()
        folder = QFileDialog.getExistingDirectory(self, "The folder you unpacked the DragGAN project into",
                                                  self.ctl.settings.project_dir or "")
        if folder:
            self.ctl.local.set_up(folder)

    def _model_chosen(self, *_):
        self.model.lineEdit().setCursorPosition(0)  # a long label shows its start: the model's name
        self._store()
        self._show_download_buttons()
        self._show_points()  # the alignment's square is the model's framing's
        if self.ctl.tool is not None:
            self.ctl.tool.refresh()

    def _download(self):
        self._store()
        name = self._model_name()
        entry = self.ctl.model_entry(name)
        if not cat.can_download(entry):
            self.ctl.start_download(name)  # says why not
            return
        title, text = cat.download_question(entry)
        answer = QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer == QMessageBox.Yes:
            self.ctl.start_download(name)

    def _new_image(self):
        self._store()
        self.ctl.new_image()

    def _run(self):
        self._store()
        self.ctl.run()

    def _toggle_tool(self, on):
        from .extension import get_tool
        tool = get_tool()
        if on:
            tool.set_mode(tool.POINTS)
        tool.set_armed(on)

    # -- controller -> GUI ---------------------------------------------------------------------------
    def _show_connection(self):
        c = self.ctl
        self.light.setStyleSheet("background:%s;border-radius:7px;" % LIGHT.get(c.state, "#888"))
        self.status.setText(c.state_message or "Not connected")
        if c.catalogue:
            current = self._model_name()
            self.model.blockSignals(True)
            self.model.clear()
            for entry in c.catalogue:
                if entry.get("name"):
                    self.model.addItem(cat.model_label(entry), entry["name"])
            idx = self.model.findData(c.settings.model or current)
            self.model.setCurrentIndex(max(idx, 0))
            self.model.lineEdit().setCursorPosition(0)  # a long label shows its start: the model's name
            self.model.blockSignals(False)
        self.url.setText(c.settings.url)  # a started local daemon sets it
        self.token.setText(c.settings.token)
        self._show_download_buttons()

    def _show_download_buttons(self):
        entry = self.ctl.model_entry(self._model_name())
        downloading = self.ctl.download is not None
        self.download_btn.setEnabled(not downloading and cat.can_download(entry))
        self.download_cancel_btn.setEnabled(downloading)

    def _show_local(self):
        local = self.ctl.local
        busy = bool(local.busy)
        self.local_status.setText(local.status_text())
        self.local_start_btn.setEnabled(not busy and not local.running)
        self.local_stop_btn.setEnabled(local.busy in ("", local.STARTING) and local.running)
        self.local_setup_btn.setEnabled(not busy and not local.running)
        self.local_setup_cancel_btn.setEnabled(local.busy == local.SETTING_UP)
        self.local_project.setText(self.ctl.settings.project_dir)
        if busy or local.running:
            self._log_timer.start()
        else:
            self._log_timer.stop()
        self._show_log()

    def _show_log(self):
        lines = self.ctl.local.log_lines()
        if lines == self._log_shown:
            return
        self._log_shown = lines
        self.local_log.setPlainText("\n".join(lines))
        bar = self.local_log.verticalScrollBar()
        bar.setValue(bar.maximum())
        self.local_status.setText(self.ctl.local.status_text())

    def _show_points(self):
        self.point_list.clear()
        pts = self.ctl.current_points()
        if pts is not None:
            self.point_list.addItems(pts.describe())
        al = self.ctl.current_alignment()
        if al is None or not len(al):
            self.align_text.setText("No alignment: the layer is sent as it is." if al is not None else "")
        else:
            problem = al.problem(self.ctl.framing())
            self.align_text.setText(problem or "Aligned by %s." % "; ".join(al.describe()))
        self.align_clear_btn.setEnabled(al is not None and len(al) > 0)

    def _show_job(self):
        running = self.ctl.running()
        self.run_btn.setEnabled(not running)
        self.stop_btn.setEnabled(running)
        self.cancel_btn.setEnabled(running)
        self.reset_original_btn.setEnabled(not running)
        self._show_download_buttons()
        pr = self.ctl.progress if running or self.ctl.progress_source == "drag" else self.ctl.download_progress
        if pr is not None:
            self.progress.setValue(int(100 * pr.fraction))
            self.progress_text.setText(pr.text)
        else:
            self.progress.setValue(0)
            self.progress_text.setText("Starting..." if running else "")

    def _show_message(self, text, error):
        self.msg.setStyleSheet("color:#e03030;" if error else "")
        self.msg.setText(text)

    def _show_armed(self, on):
        from .extension import get_tool
        aligning = on and get_tool().mode == get_tool().ALIGN
        self.tool_btn.blockSignals(True)
        self.tool_btn.setChecked(on and not aligning)
        self.tool_btn.setText("Drag tool: ON" if on and not aligning else "Drag tool")
        self.tool_btn.blockSignals(False)
        self.align_btn.blockSignals(True)
        self.align_btn.setChecked(aligning)
        self.align_btn.setText("Align: ON" if aligning else "Align")
        self.align_btn.blockSignals(False)

    def canvasChanged(self, canvas):
        try:
            self._show_points()
        except RuntimeError:
            pass
