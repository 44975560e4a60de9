"""The grading pipeline built on nbgrader: release labs, autograde a class, export, feedback.

Submodules are imported on use (nbgrader is slow to import): ``course``, ``release``,
``autograde``, ``export``, ``feedback``, ``bench``; ``execute``, ``sandbox`` and
``integrity`` run and check student code.
"""
