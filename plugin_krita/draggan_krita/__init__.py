"""DragGAN Studio for Krita: drag-based image editing with a DragGAN daemon (`draggan serve`).

Modules: extension/docker/canvas (Krita UI), controller (state and jobs), kritadoc (the only
libkis access), worker (threads), daemon + client (HTTP), and pure logic that is tested outside
Krita: geometry, points, align (Align mode's landmarks), jobspec, settings, imaging (with the carried draggan_client package).
"""
try:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita
except ImportError:  # imported outside Krita (unit tests): register nothing
    Krita = None

if Krita is not None:
    from .docker import DragGANDocker
    from .extension import DragGANExtension

    Krita.instance().addExtension(DragGANExtension(Krita.instance()))
    Krita.instance().addDockWidgetFactory(
        DockWidgetFactory("draggan_docker", DockWidgetFactoryBase.DockRight, DragGANDocker))
