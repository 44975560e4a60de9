"""The grading pipeline built on nbgrader: release labs, autograde a class, export, feedback.

Submodules are imported on use (nbgrader is slow to import): ``course``, ``release``,
``autograde``, ``export``, ``feedback``, ``bench``. ``execute`` runs a student's notebook in
a ``sandbox``ed kernel and its tests in a separate ``trusted_tests`` process; the two talk
only through ``call_loop`` with values encoded by ``plain_data``.
"""
