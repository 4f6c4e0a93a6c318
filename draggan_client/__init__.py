"""The client side of the daemon: what both editor plug-ins carry to talk to `draggan serve`.

Standard library only and Python 3.8 syntax, because it runs inside the editors' own Python
(Krita 5.1's AppImage ships 3.8). Each plug-in carries an unchanged copy of this whole package
(scripts/package_krita.py, scripts/package_gimp.py, scripts/install_gimp_plugin.sh), so modules
here import each other relatively and nothing from the rest of the project; tests check the copies.

- client.py: the HTTP client (DaemonClient, DaemonError)
- pngcodec.py: PNG encoding and decoding without Pillow
- workflow.py: one drag's conversation with the daemon (session, inversion, drag, progress words)
- catalogue.py: the daemon's models in the artist's words (usable, downloadable, menu lines, licence)
- launcher.py: start, watch and stop a local daemon, and set one up (LocalDaemon, find_command, Bootstrap)
"""
