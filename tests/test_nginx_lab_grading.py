"""The nginx lab through ``deploylab grade autograde``: wrong answers get the partial scores
and the feedback the master's asserts promise (nginx's own error line where nginx refused).

Each submission is the instructor's notebook with one answer replaced by a mistake a learner
makes (the study notes' snippets pasted as they are, headers missing or wrong, fixed weights,
a restart instead of a reload, a change that never takes app-1 out), so the other tasks keep
their full marks and the score says exactly which checks caught it. The generic pipeline
test (tests/test_grading_pipeline.py) covers full marks for the master and 0 for the release.
"""

from __future__ import annotations

import time

import pytest
from conftest import require_tool
from test_grading_pipeline import (
    SANDBOX,
    make_course,
    source_notebook,
    with_answer,
    write_submission,
)

from deploylab.grading.autograde import autograde

pytestmark = pytest.mark.nginx

PROXY = """
server {{
    listen ${{LISTEN}};
    location / {{
        proxy_pass http://${{APP}};
{headers}
    }}
}}
"""
GOOD_HEADERS = """        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""

WRONG = {
    # The notes' excerpt with placeholders: "..." is not a directive.
    "notes-excerpt": (
        "proxy",
        'site_template = """\nserver {\n    listen ${LISTEN};\n...\n    location / {\n'
        '        proxy_pass http://${APP};\n        ...\n    }\n}\n"""\n',
    ),
    "no-headers": ("proxy", f'site_template = """{PROXY.format(headers="")}"""\n'),
    "host-and-remote-addr": (
        "proxy",
        'site_template = """'
        + PROXY.format(
            headers="        proxy_set_header Host $host;\n"
            "        proxy_set_header X-Real-IP $remote_addr;\n"
            "        proxy_set_header X-Forwarded-For $remote_addr;"
        )
        + '"""\n',
    ),
    # The notes' load balancer kept inside http { }: the file is already inside http.
    "upstream-in-http": (
        "two-apps",
        'two_apps_template = """\nhttp {\n    upstream backend {\n        server ${APP_1};\n'
        "        server ${APP_2};\n    }\n    server {\n        listen ${LISTEN};\n"
        '        location / { proxy_pass http://backend; }\n    }\n}\n"""\n',
    ),
    # Right for the lesson's 5, 1, 1; wrong as soon as the weights change.
    "fixed-weights": (
        "weighted",
        'weighted_template = """\nupstream app {\n    server ${APP_1} weight=5;\n'
        "    server ${APP_2};\n    server ${APP_3};\n}\nserver {\n    listen ${LISTEN};\n"
        '    location / { proxy_pass http://app; }\n}\n"""\n',
    ),
    "restart-instead-of-reload": (
        "reload",
        'reload_template = """\nupstream app {\n    server ${APP_2};\n    server ${APP_3};\n}\n'
        "server {\n    listen ${LISTEN};\n    location / { proxy_pass http://app; }\n}\n"
        '"""\nreload_steps = ["nginx -s stop", "nginx"]\n',
    ),
    "app-1-still-in": (
        "reload",
        'reload_template = """\nupstream app {\n    server ${APP_1};\n    server ${APP_2};\n'
        "    server ${APP_3};\n}\nserver {\n    listen ${LISTEN};\n"
        '    location / { proxy_pass http://app; }\n}\n"""\n'
        'reload_steps = ["nginx -t", "nginx -s reload"]\n',
    ),
}

#: student -> (score of 14, {test cell: (points, start of its feedback message)}) for the
#: cells that lose points; every other cell keeps its full marks.
EXPECTED = {
    "notes-excerpt": (
        9,
        {
            cell: (
                0,
                # nginx reads "..." up to the next ";" or "{": the error is on line 5
                'nginx -t rejected your configuration: [emerg] unknown directive "..." in '
                "line 5 — look at line 5, inside server {",
            )
            for cell in (
                "proxy-answers-tests",
                "proxy-host-tests",
                "proxy-real-ip-tests",
                "proxy-forwarded-for-tests",
            )
        },
    ),
    "no-headers": (
        11,
        {
            "proxy-host-tests": (0, "the app should see the Host header the client sent"),
            "proxy-real-ip-tests": (0, "X-Real-IP should be the address of the client"),
            "proxy-forwarded-for-tests": (
                0,
                "a request that arrives without X-Forwarded-For should reach the app",
            ),
        },
    ),
    "host-and-remote-addr": (
        12,
        {
            "proxy-host-tests": (0, "the app should see the Host header the client sent"),
            "proxy-forwarded-for-tests": (
                0,
                "append the client's address to the X-Forwarded-For chain, do not replace it",
            ),
        },
    ),
    "upstream-in-http": (
        12,
        {
            "two-apps-tests": (
                0,
                'nginx -t rejected your configuration: [emerg] "http" directive is not allowed '
                "here in line 2 — look at line 2 — your text already goes inside http { }",
            )
        },
    ),
    "fixed-weights": (
        12,
        {"weighted-split-tests": (0, "with other weights (hidden test) each app should get")},
    ),
    "restart-instead-of-reload": (
        11,
        {
            "reload-no-failures-tests": (0, "no request may fail while the change is applied"),
            "reload-tested-tests": (0, "test the new file with nginx -t before you reload"),
        },
    ),
    "app-1-still-in": (
        10,
        {
            "reload-applied-tests": (0, "after the change app-2 and app-3 should take turns"),
            "reload-no-failures-tests": (0, "the change should have taken effect"),
            "reload-tested-tests": (0, "the change should have taken effect"),
        },
    ),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    require_tool("nginx")
    base = tmp_path_factory.mktemp("nginx-lab")
    course = make_course(base)
    master = source_notebook("nginx")
    submissions = base / "submissions"
    for student, (grade_id, answer) in WRONG.items():
        write_submission(submissions, student, with_answer(master, grade_id, answer), "nginx.ipynb")
    write_submission(submissions, "instructor", master, "nginx.ipynb")
    started = time.monotonic()
    results = autograde(course, "nginx", submissions, jobs=2, sandbox=SANDBOX, progress=False)
    return {result.student: result for result in results}, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_wrong_answers_get_partial_scores_and_feedback(graded, student):
    results, _ = graded
    result = results[student]
    score, losses = EXPECTED[student]
    assert result.status == "graded", result.detail
    assert result.max_score == 14
    for grade_id, test in result.tests.items():
        if grade_id in losses:
            points, message = losses[grade_id]
            assert test["points"] == points, (grade_id, test)
            assert test["message"].startswith(message), (grade_id, test["message"])
        else:
            assert test["points"] == test["max_points"], (grade_id, test)
    assert result.score == score


@pytest.mark.slow
def test_the_master_scores_full_marks_alongside(graded):
    results, _ = graded
    assert results["instructor"].score == 14, results["instructor"].tests
