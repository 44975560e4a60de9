"""Doctest collection: the spawner module imports JupyterHub, which only the hub's own
environment (/opt/deploylab-classroom) has; its behaviour is tested through a real hub."""

collect_ignore = ["spawner.py"]
