"""The DragGAN daemon: a Flask app that runs generate, invert and drag jobs for the editor plug-ins."""
