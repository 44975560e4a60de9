"""A whole class on one JupyterHub: accounts from a roster, nbgrader hand-out and hand-in
through a shared exchange, sandboxed grading and feedback, run by ``deploylab classroom``.

The hub runs as root (it starts each person's server as their own unix user); every
instructor command runs as the instructor's ordinary unix user.
"""
