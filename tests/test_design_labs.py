"""The design labs: the VPC design task, the autoscaling tuning task and the short concept
checks, graded by running the real model and simulator.

Two halves. First the library the tests rely on (``deploylab.autoscale.tuning``,
``deploylab.balancer.layers``, the model's one-zone rule), each against behaviour that could
fail. Then hand-written wrong answers, graded end to end through ``autograde`` (the sandbox
where it works): every wrong answer gets the partial score and the feedback sentence it
should, and nothing else loses points. Several independent wrong answers share one
submission (they sit in different graded cells), so each lab is one small batch.
"""

from __future__ import annotations

import copy

import nbformat
import pytest
from test_grading_pipeline import SANDBOX, make_course, source_notebook, write_submission

from deploylab.autoscale import simulate
from deploylab.autoscale.traces import generate_trace
from deploylab.autoscale.tuning import (
    TuningError,
    TuningGoal,
    build_tuning,
    evaluate_tuning,
    missing_rule,
)
from deploylab.balancer.layers import AWS_LOAD_BALANCERS, FIELD_LAYERS, layer_for
from deploylab.grading.autograde import autograde
from deploylab.vpc import DesignError, Vpc, loads_design

# ---------------------------------------------------------------------------------------
# the library under the labs
# ---------------------------------------------------------------------------------------
UP = {"type": "simple", "when": "above", "threshold": 80, "minutes": 5, "adjustment": 1}
DOWN = {"type": "simple", "when": "below", "threshold": 30, "minutes": 5, "adjustment": -1}


def tuning(*rules, min_size=2, max_size=30, warmup=300):
    return {"min_size": min_size, "max_size": max_size, "warmup": warmup, "policies": list(rules)}


@pytest.mark.parametrize(
    ("rules", "missing"),
    [
        ([UP], "scale-in"),
        ([DOWN], "scale-out"),
        ([UP, DOWN], None),
        ([{"type": "target-tracking", "target": 50}], None),
        ([{"type": "target-tracking", "target": 50, "disable_scale_in": True}], "scale-in"),
        ([{"type": "target-tracking", "target": 50, "disable_scale_in": True}, DOWN], None),
        ([{"type": "scheduled", "name": "n", "recurrence": "0 22 * * *", "desired": 2}], None),
        ([], None),
        (["not a rule", UP], "scale-in"),
    ],
)
def test_missing_rule(rules, missing):
    assert missing_rule(rules) == missing


def test_build_tuning_rejects_one_way_sets_with_the_reason():
    with pytest.raises(TuningError, match="no scale-in rule") as caught:
        build_tuning(tuning(UP))
    assert caught.value.reason == "no-scale-in"
    with pytest.raises(TuningError, match="no scale-out rule") as caught:
        build_tuning(tuning(DOWN))
    assert caught.value.reason == "no-scale-out"


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"min_size": 2, "max_size": 30, "warmup": 300}, "no 'policies'"),
        (dict(tuning(), speed=3), "unknown key 'speed'"),
        (tuning(min_size=8, max_size=4), "min_size 8 is above max_size 4"),
        (tuning(max_size=99), "account's limit"),
        (tuning(dict(UP, adjustment=-1), DOWN), "must add instances"),
        (tuning({"type": "target-tracking", "target": 150}), "above 100% CPU"),
        (tuning({"type": "step", "when": "above", "threshold": 70, "minutes": 3}), "'steps'"),
        (
            tuning({"type": "scheduled", "name": "x", "recurrence": "0 25 * * *", "desired": 2}),
            "hour",
        ),
        (tuning({"type": "magic"}), "type is one of"),
    ],
)
def test_build_tuning_names_the_bad_value(bad, words):
    with pytest.raises(TuningError, match=words.replace("(", r"\(")):
        build_tuning(bad)


def test_build_tuning_turns_rules_into_policies_and_a_schedule():
    config, policies = build_tuning(
        tuning(
            {
                "type": "step",
                "when": "above",
                "threshold": 60,
                "minutes": 2,
                "steps": [[0, None, 2]],
            },
            {
                "type": "step",
                "when": "below",
                "threshold": 30,
                "minutes": 9,
                "steps": [[None, 0, -1]],
            },
            {"type": "scheduled", "name": "m", "recurrence": "0 7 * * 1-5", "min_size": 6},
            min_size=3,
            warmup=120,
        )
    )
    assert (config.min_size, config.initial, config.warmup) == (3, 3, 120.0)
    assert [type(p).__name__ for p in policies] == ["StepScalingPolicy", "StepScalingPolicy"]
    assert [a.name for a in config.scheduled] == ["m"]


def test_simulate_runs_the_policies_it_is_given():
    trace = generate_trace("spike", days=0.25, base=100, peak=900)
    config, policies = build_tuning(tuning({"type": "target-tracking", "target": 50}))
    grown = simulate(trace, config, policies=policies)
    fixed = simulate(trace, config, policies=[])
    assert grown.metrics["max_instances"] > 2
    assert fixed.metrics["max_instances"] == 2  # no policy: the group keeps its minimum


def test_flash_hour_moves_the_flash_crowd():
    usual = generate_trace("flash-crowd", days=7, noise=0)
    moved = generate_trace("flash-crowd", days=7, noise=0, flash_hour=9.5)
    assert int(usual.argmax()) // 60 == 2 * 24 + 11  # Wednesday 11:00
    assert int(moved.argmax()) // 60 == 9  # Monday 09:30 is in hour 9


def test_tuning_goal_separates_a_tuned_group_from_an_untuned_one():
    goal = TuningGoal(days=2, slo_limit=0.005, budget_usd=5.5, startup_cpu=90, startup_seconds=240)
    tuned = evaluate_tuning(tuning({"type": "target-tracking", "target": 62}), goal)
    too_small = evaluate_tuning(tuning(min_size=4, max_size=4), goal)
    too_big = evaluate_tuning(tuning(min_size=30, max_size=30), goal)
    assert tuned.passed, tuned
    assert too_small.cost_ok and not too_small.slo_ok
    assert too_big.slo_ok and not too_big.cost_ok


def test_layer_for_is_the_highest_layer_among_the_fields():
    assert layer_for(["client ip", "tcp port", "cookie"]) == "L7"
    assert layer_for(["Client IP"]) == "L3"
    assert {layer_for([field]) for field in FIELD_LAYERS} == {"L2", "L3", "L4", "L7"}
    assert AWS_LOAD_BALANCERS == {"ALB": "L7", "NLB": "L4", "GWLB": "L3"}
    with pytest.raises(ValueError, match="'port number'"):
        layer_for(["port number"])
    with pytest.raises(ValueError, match="no fields"):
        layer_for([])


@pytest.mark.parametrize("zones", ["ap-northeast-2a,ap-northeast-2c", "2a 2c", "a;b", "a/b"])
def test_a_subnet_cannot_span_zones(zones):
    with pytest.raises(DesignError, match="cannot span Availability Zones"):
        Vpc("10.0.0.0/16").add_subnet("app", "10.0.0.0/23", az=zones)
    text = f'[vpc]\ncidr = "10.0.0.0/16"\n[[subnets]]\nname = "app"\ncidr = "10.0.0.0/23"\naz = "{zones}"\n'
    with pytest.raises(DesignError, match=r"subnets\[0\] \('app'\).*span"):
        loads_design(text)


def test_the_labs_broken_design_is_the_asset():
    """The vpc lab embeds assets/vpc/broken.toml (the sandbox sees no assets/): same text."""
    from test_grading_pipeline import ROOT

    cell = next(
        c
        for c in source_notebook("vpc").cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "broken-setup"
    )
    assert cell.source == 'BROKEN = """\n' + (ROOT / "assets/vpc/broken.toml").read_text() + '"""'


# ---------------------------------------------------------------------------------------
# wrong answers, graded end to end
# ---------------------------------------------------------------------------------------
def answered(lab: str, answers: dict[str, str]):
    """The instructor's notebook of ``lab`` with some solution cells replaced."""
    notebook = copy.deepcopy(source_notebook(lab))
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers.pop(grade_id)
    assert not answers, f"no such solution cells: {sorted(answers)}"
    return notebook


def solution_of(lab: str, grade_id: str) -> str:
    for cell in source_notebook(lab).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            markers = ("### BEGIN SOLUTION", "### END SOLUTION")
            return "\n".join(
                line for line in cell.source.splitlines() if line.strip() not in markers
            )
    raise KeyError(grade_id)


def grade(tmp_path, lab: str, submissions: dict[str, nbformat.NotebookNode]):
    course = make_course(tmp_path)
    folder = tmp_path / "submissions"
    for student, notebook in submissions.items():
        write_submission(folder, student, notebook, f"{lab}.ipynb")
    # Generous timeouts: the labs' older function tests make thousands of calls across the
    # boundary, and this machine is shared; the limits themselves are tested elsewhere.
    results = autograde(
        course,
        lab,
        folder,
        jobs=2,
        sandbox=SANDBOX,
        progress=False,
        cell_timeout=120,
        notebook_timeout=900,
    )
    return {result.student: result for result in results}


def check(result, expected: dict[str, tuple[float, str | None]], total: float) -> None:
    """``expected``: grade_id -> (points, a phrase of the feedback message or None).
    Every test cell not named must have full points."""
    assert result.status == "graded", (result.student, result.status, result.detail)
    for grade_id, test in result.tests.items():
        points, phrase = expected.get(grade_id, (test["max_points"], None))
        assert test["points"] == points, (result.student, grade_id, test)
        if phrase is not None:
            assert phrase in test["message"], (result.student, grade_id, test["message"])
    assert result.score == total, (result.student, result.score, result.tests)


DESIGN = solution_of("vpc", "design")
FIXED = solution_of("vpc", "broken")

# -- vpc: designs -------------------------------------------------------------------------
ONE_ZONE = DESIGN.replace('az = "ap-northeast-2c"', 'az = "ap-northeast-2a"')
NO_NAT = DESIGN.replace(
    'routes = [{ destination = "0.0.0.0/0", target = "nat-a" }]', "routes = []"
).replace('routes = [{ destination = "0.0.0.0/0", target = "nat-c" }]', "routes = []")
NARROW_NAT_ROUTE = DESIGN.replace(
    '{ destination = "0.0.0.0/0", target = "nat-a" }',
    '{ destination = "198.51.100.0/24", target = "nat-a" }',
).replace(
    '{ destination = "0.0.0.0/0", target = "nat-c" }',
    '{ destination = "198.51.100.0/24", target = "nat-c" }',
)
NAT_IN_PRIVATE = DESIGN.replace(
    'subnet = "public-a"\npublic_ip = "203.0.113.50"',
    'subnet = "private-a"\npublic_ip = "203.0.113.50"',
)
DB_IN_PUBLIC = (
    DESIGN.replace('name = "db-a"\nsubnet = "private-a"', 'name = "db-a"\nsubnet = "public-a"')
    .replace('name = "web-a"', 'name = "app-a"')
    .replace('name = "app-a"\nsubnet = "public-a"', 'name = "app-a"\nsubnet = "private-a"')
)
SMALL_SUBNETS = DESIGN.replace(".0/24", ".0/26")
NOT_TOML = DESIGN.replace("[vpc]", "[vpc", 1)

# -- vpc: fixes of broken.toml --------------------------------------------------------------
UNFIXED = "fixed = BROKEN"
DELETED = (
    FIXED[: FIXED.index('[[subnets]]\nname = "overlapping"')]
    + FIXED[FIXED.index('[[subnets]]\nname = "tiny"') :]
)
NAT_WITHOUT_EIP = FIXED.replace(
    'subnet = "public"\npublic_ip = "203.0.113.50"', 'subnet = "public"'
)
UNUSED_PUBLIC_IP = FIXED.replace(
    'private_ip = "10.1.9.20"', 'private_ip = "10.1.9.20"\npublic_ip = "203.0.113.20"'
)
SQUATTER_LEFT = FIXED.replace('private_ip = "10.1.9.10"', 'private_ip = "10.1.9.1"')


@pytest.fixture(scope="module")
def vpc_results(tmp_path_factory):
    lab = "vpc"
    wrong = {
        "one-zone": {"design": ONE_ZONE, "broken": UNFIXED},
        "no-nat": {"design": NO_NAT, "broken": DELETED},
        "narrow-nat": {
            "design": NARROW_NAT_ROUTE,
            "broken": NAT_WITHOUT_EIP,
            "one-zone": "split = SPANNING",
        },
        "nat-in-private": {
            "design": NAT_IN_PRIVATE,
            "broken": UNUSED_PUBLIC_IP,
            "route-tables": solution_of(lab, "route-tables").replace(
                '"batch": "main"', '"batch": "rt-app"'
            ),
        },
        "db-in-public": {"design": DB_IN_PUBLIC, "broken": SQUATTER_LEFT},
        "small-subnets": {"design": SMALL_SUBNETS},
        "not-toml": {"design": NOT_TOML},
    }
    submissions = {student: answered(lab, answers) for student, answers in wrong.items()}
    return grade(tmp_path_factory.mktemp("vpc-wrong"), lab, submissions)


LOADS = "Requirement 1: the design does not load"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("student", "expected", "total"),
    [
        (
            "one-zone",
            {
                "design-zones-tests": (
                    0,
                    "Requirement 2: the subnets must be spread over at least two",
                ),
                "broken-subnets-tests": (0, "a subnet still lies outside the VPC block"),
                "broken-routes-tests": (
                    0,
                    "a route still points to a gateway the VPC does not have",
                ),
                "broken-instances-tests": (0, "private IP is still outside its subnet"),
            },
            9 + 2 + 2 + 0,
        ),
        (
            "no-nat",
            {
                "design-egress-tests": (
                    0,
                    "Requirement 4: an instance in a private subnet cannot reach the internet",
                ),
                "broken-subnets-tests": (0, "keep every subnet of BROKEN, by name"),
            },
            8 + 2 + 2 + 4,
        ),
        (
            "narrow-nat",
            {
                "design-egress-tests": (0, "must cover 0.0.0.0/0, not only a few blocks"),
                "broken-routes-tests": (0, "the NAT gateway still has no Elastic IP"),
                "one-zone-tests": (0, "split does not load"),
            },
            8 + 0 + 2 + 4,
        ),
        (
            "nat-in-private",
            {
                "design-valid-tests": (0, "Requirement 1: the model reports errors"),
                "design-egress-tests": (
                    0,
                    "Requirement 4: an instance in a private subnet cannot reach",
                ),
                "broken-instances-tests": (0, "has a public IP nothing can use: remove it"),
                "route-tables-tests": (0, "uses the VPC's main route table, called main"),
            },
            6 + 2 + 0 + 4,
        ),
        (
            "db-in-public",
            {
                "design-databases-tests": (
                    0,
                    "Requirement 3: every private subnet needs a database",
                ),
                "broken-instances-tests": (0, "one of the five addresses AWS reserves"),
            },
            10 + 2 + 2 + 4,
        ),
        (
            "small-subnets",
            {"design-growth-tests": (0, "Requirement 6: every subnet must be a /24 or larger")},
            10 + 2 + 2 + 6,
        ),
        (
            "not-toml",
            {
                "design-valid-tests": (0, LOADS),
                "design-zones-tests": (0, LOADS),
                "design-databases-tests": (0, LOADS),
                "design-egress-tests": (0, LOADS),
                "design-closed-tests": (0, LOADS),
                "design-growth-tests": (0, LOADS),
            },
            0 + 2 + 2 + 6,
        ),
    ],
)
def test_wrong_vpc_answers(vpc_results, student, expected, total):
    """Totals: the design's share (of 11), then one-zone (2), route tables (2), broken (6)
    — plus the untouched functions of parts 1-4 (15)."""
    check(vpc_results[student], expected, total + 15)


# -- autoscaling ----------------------------------------------------------------------------
def tuning_source(value: dict) -> str:
    return f"tuning = {value!r}"


TT = {"type": "target-tracking", "target": 50}


@pytest.fixture(scope="module")
def autoscaling_results(tmp_path_factory):
    lab = "autoscaling"
    maintain = solution_of(lab, "maintain")
    wrong = {
        "scale-out-only": {
            "tuning": tuning_source(tuning(UP)),
            "both-rules": solution_of(lab, "both-rules").replace(
                'rule.get("disable_scale_in")', "False"
            ),
        },
        "fixed-six": {
            "tuning": tuning_source(tuning(min_size=6, max_size=6)),
            "scaling-types": solution_of(lab, "scaling-types").replace(
                '"B": "maintain"', '"B": "manual"'
            ),
        },
        "fixed-thirty": {
            "tuning": tuning_source(tuning(min_size=30, max_size=30)),
            "maintain": maintain.replace('"max_size": 6', '"max_size": 10'),
        },
        "untuned-default": {
            "tuning": tuning_source(tuning(TT)),
            "maintain": maintain.replace("version=2, ", ""),
        },
        "overfitted": {"tuning": tuning_source(tuning(dict(TT, target=68)))},
        "lazy-target": {
            "tuning": tuning_source(tuning(dict(TT, target=90))),
            "maintain": maintain.replace(
                'cannot_change = "launch configuration"', 'cannot_change = "launch template"'
            ),
        },
        "malformed": {"tuning": tuning_source(dict(tuning(TT), cooldown=300))},
    }
    submissions = {student: answered(lab, answers) for student, answers in wrong.items()}
    return grade(tmp_path_factory.mktemp("autoscaling-wrong"), lab, submissions)


REJECTED = "The simulator rejects the tuning"
SLO = "On this week too many minutes break the latency SLO"
COST = "On this week the group costs more than the budget"
OTHER_SLO = "On another week of the same shape too many minutes break the SLO"
OTHER_COST = "On another week of the same shape the group costs more than the budget"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("student", "expected", "total"),
    [
        (
            "scale-out-only",
            {
                "tuning-valid-tests": (0, "Your policies can scale out but never scale in"),
                "tuning-slo-tests": (0, REJECTED),
                "tuning-cost-tests": (0, REJECTED),
                "tuning-other-weeks-tests": (0, REJECTED),
                "both-rules-tests": (0, "target tracking with disable_scale_in only scales out"),
            },
            0 + 0 + 2 + 3,
        ),
        (
            "fixed-six",
            {
                "tuning-slo-tests": (0, SLO),
                "tuning-other-weeks-tests": (0, OTHER_SLO),
                "scaling-types-tests": (0, "B: a fixed count kept running"),
            },
            3 + 2 + 0 + 3,
        ),
        (
            "fixed-thirty",
            {
                "tuning-cost-tests": (0, COST),
                "tuning-other-weeks-tests": (0, OTHER_COST),
                "maintain-tests": (0, "the group must refuse a seventh instance"),
            },
            3 + 2 + 2 + 0,
        ),
        (
            "untuned-default",
            {
                "tuning-cost-tests": (0, COST),
                "tuning-other-weeks-tests": (0, OTHER_COST),
                "maintain-tests": (0, "template_v2 must be the next version of the same template"),
            },
            3 + 2 + 2 + 0,
        ),
        ("overfitted", {"tuning-other-weeks-tests": (0, OTHER_SLO)}, 5 + 2 + 2 + 3),
        (
            "lazy-target",
            {
                "tuning-slo-tests": (0, SLO),
                "tuning-other-weeks-tests": (0, OTHER_SLO),
                "maintain-tests": (0, "a launch configuration is immutable"),
            },
            3 + 2 + 2 + 0,
        ),
        (
            "malformed",
            {
                "tuning-valid-tests": (0, "run build_tuning(tuning) to see the key and value"),
                "tuning-slo-tests": (0, REJECTED),
                "tuning-cost-tests": (0, REJECTED),
                "tuning-other-weeks-tests": (0, REJECTED),
            },
            0 + 2 + 2 + 3,
        ),
    ],
)
def test_wrong_autoscaling_answers(autoscaling_results, student, expected, total):
    """Totals: the tuning's share (of 7), then both rules (2), kinds (2), maintain (3) — plus
    the untouched functions of parts 1-3 (10)."""
    check(autoscaling_results[student], expected, total + 10)


# -- load-balancing ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def load_balancing_results(tmp_path_factory):
    lab = "load-balancing"
    layers = solution_of(lab, "layers")
    scale = solution_of(lab, "scale")
    wrong = {
        "gwlb-as-l4": {"layers": layers.replace('"GWLB": "L3"', '"GWLB": "L4"')},
        "ip-is-l4": {
            "layers": layers.replace('"client ip": 3', '"client ip": 4'),
            "scale": scale.replace('"C": "out"', '"C": "up"'),
        },
        "cookie-on-nlb": {"layers": layers.replace('"S": "ALB"', '"S": "NLB"')},
    }
    submissions = {student: answered(lab, answers) for student, answers in wrong.items()}
    return grade(tmp_path_factory.mktemp("lb-wrong"), lab, submissions)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("student", "expected", "total"),
    [
        ("gwlb-as-l4", {"layers-tests": (0, "forwards IP packets to appliances: L3")}, 2),
        (
            "ip-is-l4",
            {
                "layers-tests": (0, "the highest layer among the fields decides"),
                "scale-tests": (0, "C: autoscaling adds servers: it scales out"),
            },
            0,
        ),
        ("cookie-on-nlb", {"layers-tests": (0, "S: a cookie is an HTTP field")}, 2),
    ],
)
def test_wrong_load_balancing_answers(load_balancing_results, student, expected, total):
    """Totals: layers (3) and scale (2) — plus the untouched functions of parts 1-3 (10)."""
    check(load_balancing_results[student], expected, total + 10)


# -- proxies ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_wrong_proxy_kind(tmp_path):
    lab = "proxies"
    wrong = solution_of(lab, "proxy-kinds").replace('"F": "forward"', '"F": "reverse"')
    results = grade(tmp_path, lab, {"hides-clients": answered(lab, {"proxy-kinds": wrong})})
    check(
        results["hides-clients"],
        {"proxy-kinds-tests": (0, "F: hiding the clients from the servers is a forward proxy")},
        13,
    )
