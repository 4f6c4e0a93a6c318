"""Test-only Krita plug-in: drives the installed DragGAN plug-in (draggan_krita) in a real Krita.

Active only when DRAGGAN_E2E_OUT (path of the JSON report) is set. The scenario is a generator;
each `yield ms` returns to Qt's event loop (QTimer.singleShot), so network answers, projection
updates and real X input keep flowing. Mouse input is real (xdotool through the X server).
Every step is asserted; the report is written after each step (report.json.partial) and at the
end, then Krita is left with os._exit (quitting during start-up can hang or crash).
"""
import os

if os.environ.get("DRAGGAN_E2E_OUT"):
    from krita import Krita
    from .scenario import E2EExtension

    Krita.instance().addExtension(E2EExtension(Krita.instance()))
