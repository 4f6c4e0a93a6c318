"""Filters > DragGAN > Daemon...: the daemon every DragGAN procedure uses (its address and token,
stored once) and the local daemon (set up, start, stop, download models), as a dialog that comes
back after each action with the new state, and as one action per call for scripts.

Runs in GIMP's own Python with the standard library and gi only.
"""
import os
import sys

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

import draggan_gimp as common  # noqa: E402
import draggan_logic as logic  # noqa: E402
import draggan_settings as stored_settings  # noqa: E402
from draggan_client import launcher, workflow  # noqa: E402
from draggan_client.client import DaemonClient, DaemonError  # noqa: E402
from draggan_watchdog import Watchdog  # noqa: E402

SETTING_ARGS = (("server-url", "url"), ("token", "token"), ("program", "command"), ("project-folder", "project_dir"),
                ("extra-args", "extra_args"))


def run_daemon(procedure, config, data):
    """Filters > DragGAN > Daemon...: the daemon's address and token for every DragGAN procedure, and the
    local daemon: start, stop, set up, download models. Interactive: a dialog that comes back after each
    action with the new state, until it is closed. Scripts: one action per call (the 'action' argument);
    an empty setting argument keeps the stored value."""
    interactive = config.get_property("run-mode") == Gimp.RunMode.INTERACTIVE
    if interactive:
        return _daemon_dialog(procedure, config)
    try:
        action = logic.check_action(config.get_property("action"))
        settings = common.stored()
        changed = False
        for arg, field in SETTING_ARGS:
            value = (config.get_property(arg) or "").strip()
            if value:
                setattr(settings, field, _checked_setting(field, value))
                changed = True
        if action in ("save", "start"):
            settings.keep_running = bool(config.get_property("keep-running"))
            changed = True
        if changed:
            stored_settings.save(settings)
        message = _daemon_action(action, settings, (config.get_property("model") or "").strip())
        url, health, _ = _probe(settings)
    except Exception as e:  # noqa: BLE001 - every failure becomes a message, never a crashed plug-in
        return common.failed(procedure, e)
    Gimp.progress_end()
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS), GObject.Value(GObject.TYPE_STRING, url),
        GObject.Value(GObject.TYPE_BOOLEAN, health is not None), GObject.Value(GObject.TYPE_STRING, message)])


def _checked_setting(field, value):
    if field == "url":
        try:
            return stored_settings.check_url(value)
        except ValueError as e:
            raise logic.PluginError(str(e), calling=True) from None
    if len(value) > stored_settings.MAX_TEXT or "\0" in value:
        raise logic.PluginError("the setting '{}' is too long".format(field), calling=True)
    return value


def _probe(settings):
    """(url, health or None, error message or None) of the daemon at the stored address."""
    url = stored_settings.effective_url("", settings)
    client = DaemonClient(url, token=stored_settings.effective_token("", settings), timeout=common.PROBE_TIMEOUT_S)
    try:
        return url, common.run_in_thread(lambda state: client.health()), None
    except DaemonError as e:
        return url, None, logic.friendly(e.message, e.code) if e.code != "unreachable" else None


def _stored_client(settings, timeout=30.0):
    return DaemonClient(stored_settings.effective_url("", settings),
                        token=stored_settings.effective_token("", settings), timeout=timeout, work_timeout=600.0)


def _daemon_action(action, settings, model):
    """Do one action of the Daemon... procedure; returns what happened, in words."""
    if action == "status":
        return _status_text(settings, *_probe(settings))
    if action == "save":
        return "Saved the DragGAN settings in {}.".format(stored_settings.config_path())
    if action == "start":
        return _start_local(settings)
    if action == "stop":
        return _stop_local(settings)
    if action == "download":
        return _download(settings, model)
    return _set_up(settings)


def _status_text(settings, url, health, error):
    """Whether the daemon answers; when the local daemon started from GIMP has ended, the end of its log."""
    ended = health is None and settings.local_pid and not launcher.daemon_running(settings.local_pid)
    return logic.daemon_status(url, health, error, settings.local_pid, launcher.log_file_tail() if ended else None)


def _start_local(settings):
    if settings.local_pid and settings.local_url:
        client = DaemonClient(settings.local_url, timeout=common.PROBE_TIMEOUT_S)
        try:
            common.run_in_thread(lambda state: client.health())
            settings.url = settings.local_url
            stored_settings.save(settings)
            return "The local DragGAN daemon already runs at {} (process {}).".format(settings.local_url,
                                                                                    settings.local_pid)
        except DaemonError:
            pass  # gone: start a new one
    daemon = launcher.LocalDaemon()
    Gimp.progress_init("DragGAN: starting the local daemon (the first start may take a minute)")

    def work(state):
        url = launcher.start_local(daemon, settings.daemon_settings(), editor_pid=os.getppid())
        pid = daemon.pid
        daemon.detach()  # it outlives this plug-in process (and GIMP too when "keep running" is ticked)
        return url, pid

    url, pid = common.run_in_thread(work)
    settings.url, settings.local_url, settings.local_pid = url, url, pid
    stored_settings.save(settings)
    Gimp.progress_end()
    return "Started the local DragGAN daemon at {} (process {}){}.".format(
        url, pid, "; it keeps running after GIMP quits" if settings.keep_running else "; it stops when GIMP quits")


def _stop_local(settings):
    pid = settings.local_pid
    if not pid:
        return "No local DragGAN daemon was started from GIMP."
    stopped = common.run_in_thread(lambda state: launcher.stop_detached(pid))
    settings.local_pid, settings.local_url = 0, ""
    stored_settings.save(settings)
    if not stopped:
        return "The local DragGAN daemon (process {}) was not running any more.".format(pid)
    return "Stopped the local DragGAN daemon (process {}).".format(pid)


def _download(settings, model):
    if not model or model == logic.DEFAULT_MODEL:
        raise logic.PluginError("choose the model to download (the daemon lists the ones it can download)", True)
    client = _stored_client(settings)
    watchdog = None
    Gimp.progress_init("DragGAN: downloading {}".format(model))

    def work(state):
        job = client.download_model(model)
        watchdog_box["dog"] = dog = Watchdog(client.url, client.token)  # GIMP's Cancel: the daemon keeps the part
        dog.job(job["job_id"])
        state["status"] = job
        return client.wait(job["job_id"], on_progress=lambda s: state.__setitem__("status", s), poll_interval=0.5)

    watchdog_box = {}
    try:
        final = common.run_in_thread(work, common.show_progress)
    finally:
        watchdog = watchdog_box.get("dog")
        if watchdog is not None:
            watchdog.done()
    text = workflow.progress(final).text
    if final.get("state") != "done":
        raise logic.PluginError(text)
    return text + "."


def _set_up(settings):
    if not settings.project_dir:
        raise logic.PluginError("choose the project folder (the folder you unpacked DragGAN into) first", True)
    setup = launcher.Bootstrap(settings.project_dir)
    Gimp.progress_init("DragGAN: setting up the local daemon in {} (a few minutes)".format(setup.project_dir))

    def work(state):
        setup.run(lambda line: state.__setitem__("status", line))

    common.run_in_thread(work, lambda line: Gimp.progress_set_text("DragGAN set-up: " + line[:200]))
    Gimp.progress_end()
    return "The local daemon is set up in {}; start it now.".format(setup.project_dir)


def _daemon_dialog(procedure, config):
    """The Daemon... dialog, shown again after each action with the new state, until it is closed."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi
    GimpUi.init(procedure.get_name())
    download = Gimp.param_spec_choice_get_choice(procedure.find_argument("download-choice"))
    offered = set(download.list_nicks())
    message = ""
    while True:
        settings = common.stored()
        url, health, error = _probe(settings)
        Gimp.progress_end()
        catalogue = []
        if health is not None:
            try:
                catalogue = _stored_client(settings, common.PROBE_TIMEOUT_S).catalogue()
            except DaemonError:
                pass
        choices = logic.download_choices(catalogue)
        for number, (nick, label, help_text) in enumerate(choices, len(offered)):
            if nick not in offered:
                download.add(nick, number, label, help_text)
                offered.add(nick)
        available = {nick for nick, _, _ in choices}
        for nick in offered - {logic.DEFAULT_MODEL}:
            download.set_sensitive(nick, nick in available)  # downloaded meanwhile: greyed out
        if choices:
            config.set_property("download-choice", choices[0][0])
        config.set_property("server-url", settings.url)
        config.set_property("token", settings.token)
        config.set_property("program", settings.command)
        config.set_property("project-folder", settings.project_dir)
        config.set_property("extra-args", settings.extra_args)
        config.set_property("keep-running", settings.keep_running)
        status = _status_text(settings, url, health, error)
        if health is not None and not choices:
            status += " Every model it can download is downloaded."
        dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title="DragGAN: Daemon")
        dialog.set_ok_label("_Apply")
        local = ["program", "project-folder", "extra-args", "keep-running"]
        try:
            dialog.get_label("status-label", (message + "\n\n" if message else "") + status, False, False)
            dialog.fill_box("local-box", local)
            dialog.get_label("local-label", "Local daemon", False, False)
            dialog.fill_frame("local", "local-label", False, "local-box")
            dialog.fill(["status-label", "action", "server-url", "token", "download-choice", "local"])
        except Exception as e:  # an older or newer GimpUi without these builders: the fields flat, status apart
            print("DragGAN: plain Daemon dialog ({})".format(e), file=sys.stderr)
            Gimp.message("DragGAN: " + (message + "\n" if message else "") + status)
            dialog.fill(["action", "server-url", "token", "download-choice"] + local)
        ok = dialog.run()
        dialog.destroy()
        if not ok:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        try:
            action = logic.check_action(config.get_property("action"))
            settings.url = _checked_setting("url", (config.get_property("server-url") or "").strip())
            settings.token = (config.get_property("token") or "").strip()
            settings.command = _checked_setting("command", (config.get_property("program") or "").strip())
            settings.project_dir = _checked_setting("project_dir",
                                                    (config.get_property("project-folder") or "").strip())
            settings.extra_args = _checked_setting("extra_args", (config.get_property("extra-args") or "").strip())
            settings.keep_running = bool(config.get_property("keep-running"))
            stored_settings.save(settings)
            model = config.get_property("download-choice") if choices else ""
            message = _daemon_action(action, settings, logic.model_argument(model))
        except launcher.BootstrapCancelled:
            message = "The set-up was cancelled."
        except Exception as e:  # noqa: BLE001 - shown in the dialog, which opens again
            Gimp.progress_end()
            message = common.message_of(e)



def daemon_procedure(plugin, name):
    proc = Gimp.Procedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run_daemon, None)
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
    proc.set_menu_label("_Daemon...")
    proc.add_menu_path(common.MENU)
    proc.set_documentation(
        "The DragGAN daemon: its address and token, start and stop the local one, download models",
        "Stores the daemon's address and token once for DragGAN Drag and New image from model (their "
        "'server-url' and 'token' arguments may stay empty). Actions: status (does the daemon answer), save "
        "(the settings only), start (the local daemon, `draggan serve`, kept after this call and ending with "
        "GIMP unless keep-running), stop (the local daemon started from GIMP), download (the catalogue model "
        "named by 'model'; GIMP's Cancel keeps the partial file and the next download resumes), setup "
        "(install the local daemon into the project folder). A setting argument left empty keeps the stored "
        "value. Returns the daemon's address, whether it answers, and what happened.", name)
    proc.set_attribution("draggan-studio", "draggan-studio contributors", "2026")
    proc.add_enum_argument("run-mode", "Run mode", "The run mode", Gimp.RunMode, Gimp.RunMode.INTERACTIVE, common.RW)
    actions = Gimp.Choice.new()
    for number, (nick, label) in enumerate(logic.ACTIONS.items()):
        actions.add(nick, number, label, "")
    proc.add_choice_argument("action", "Ac_tion", "What Apply does", actions, "status", common.RW)
    proc.add_string_argument("server-url", "Daemon _URL", "Address of the daemon every DragGAN procedure uses "
                             "(empty: $DRAGGAN_URL, else http://127.0.0.1:8765); Start sets it to the local one",
                             "", common.RW)
    proc.add_string_argument("token", "Acc_ess token", "The daemon's access token (empty: none)", "", common.RW)
    proc.add_string_argument("program", "Daemon _program", "The draggan program (empty: <project folder>/.venv/"
                             "bin/draggan, else draggan on PATH)", "", common.RW)
    proc.add_string_argument("project-folder", "Pro_ject folder", "The folder DragGAN was unpacked into (for "
                             "set-up and its .venv)", "", common.RW)
    proc.add_string_argument("extra-args", "E_xtra arguments", "More `draggan serve` arguments, e.g. --device cpu "
                             "--models DIR --catalogue FILE", "", common.RW)
    proc.add_boolean_argument("keep-running", "_Keep running after GIMP quits", "The local daemon outlives GIMP",
                              False, common.RW)
    proc.add_string_argument("model", "Model to download", "For 'download': a catalogue model's name", "", common.RW)
    download = Gimp.Choice.new()
    download.add(logic.DEFAULT_MODEL, 0, "(none: the daemon does not answer or has nothing to download)", "")
    proc.add_choice_argument("download-choice", "_Model to download", "The dialog's list of models the daemon can "
                             "download, with their size and licence (scripts: leave it and set 'model')", download,
                             logic.DEFAULT_MODEL, common.RW)
    proc.add_string_return_value("url", "URL", "The daemon's address", "", common.RW)
    proc.add_boolean_return_value("answers", "Answers", "Whether the daemon answers there", False, common.RW)
    proc.add_string_return_value("message", "Message", "What happened, in words", "", common.RW)
    return proc
