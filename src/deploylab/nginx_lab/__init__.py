"""The nginx lab: a learner's nginx configuration, run in a real nginx and graded by what it does.

:mod:`~deploylab.nginx_lab.checks` holds the scenarios, :func:`check_site` (the grader's
check, run from the trusted tests) and :func:`try_site` (the learner's "try it");
:mod:`~deploylab.nginx_lab.runner` runs one job in the lab's sandbox;
:mod:`~deploylab.nginx_lab.harness` is the program inside it (demo apps, nginx, clients);
:mod:`~deploylab.nginx_lab.feedback` turns nginx's error lines into safe feedback.
"""

from deploylab.nginx_lab.checks import (
    BEFORE_RELOAD,
    PROXY_LESSON,
    RELOAD_LESSON,
    TWO_APPS_LESSON,
    WEIGHTED_LESSON,
    check_site,
    proxy_scenario,
    reload_scenario,
    render,
    try_site,
    upstream_scenario,
)
from deploylab.nginx_lab.feedback import ConfigRejected
from deploylab.nginx_lab.runner import HarnessFailed, warm_up

__all__ = [
    "BEFORE_RELOAD",
    "PROXY_LESSON",
    "RELOAD_LESSON",
    "TWO_APPS_LESSON",
    "WEIGHTED_LESSON",
    "ConfigRejected",
    "HarnessFailed",
    "check_site",
    "proxy_scenario",
    "reload_scenario",
    "render",
    "try_site",
    "upstream_scenario",
    "warm_up",
]
