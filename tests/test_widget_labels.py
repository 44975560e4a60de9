"""Widgets' own words follow the workbook language: the Python label table and the words the
JavaScript asks for (``say(model, "key", "English …")``) must agree, placeholders included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import deploylab.widgets.balancer
import deploylab.widgets.deploy_timeline
import deploylab.widgets.request_flow
import deploylab.widgets.slide_mode
import deploylab.widgets.vpc  # noqa: F401  (their classes are found as LabelledWidget subclasses)
from deploylab.widgets.course_map import COURSE_STOPS, CourseMap
from deploylab.widgets.labels import WIDGET_LABELS, LabelledWidget

WIDGETS = Path(__file__).resolve().parents[1] / "src" / "deploylab" / "widgets"
SAY = re.compile(r'say\(model, "([^"]+)", "((?:[^"\\]|\\.)*)"')
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def words_asked_for(table: str) -> dict[str, str]:
    """label key → English fallback, for every ``say`` call in the widget's JavaScript."""
    return dict(SAY.findall((WIDGETS / f"{table}.js").read_text(encoding="utf-8")))


JS_TABLES = sorted(path.stem for path in WIDGETS.glob("*.js") if "say(model" in path.read_text())


def test_every_widget_script_asks_python_for_its_words():
    python_only = {"autoscale", "selfcheck", "demos"}  # words used from Python, not from a script
    assert set(JS_TABLES) == {t for t in WIDGET_LABELS["ko"] if t not in python_only}


@pytest.mark.parametrize("table", JS_TABLES)
def test_korean_labels_cover_exactly_the_words_the_script_uses(table):
    asked = words_asked_for(table)
    korean = {key: text for key, text in WIDGET_LABELS["ko"][table].items() if ":" not in key}
    assert set(korean) == set(asked), (
        f"{table}.js asks for {sorted(set(asked) - set(korean))} which have no Korean; "
        f"Korean labels {sorted(set(korean) - set(asked))} are never used"
    )
    for key, english in asked.items():
        assert set(PLACEHOLDER.findall(korean[key])) == set(PLACEHOLDER.findall(english)), key


def test_course_map_stops_have_korean_names_and_summaries():
    labels = WIDGET_LABELS["ko"]["course_map"]
    for stop in COURSE_STOPS:
        assert f"stop:{stop.name}" in labels and f"summary:{stop.name}" in labels


def test_widget_labels_follow_the_workbook_language(monkeypatch):
    monkeypatch.setenv("DEPLOYLAB_LANG", "ko")
    assert CourseMap().labels["play"] == "재생"
    monkeypatch.setenv("DEPLOYLAB_LANG", "en")
    assert CourseMap().labels == {}
    classes = {cls.label_table for cls in _subclasses(LabelledWidget)}
    assert set(JS_TABLES) <= classes


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_autoscale_explorer_sliders_are_labelled_in_korean(monkeypatch):
    from deploylab.widgets.autoscale import AutoscaleExplorer

    monkeypatch.setenv("DEPLOYLAB_LANG", "ko")
    explorer = AutoscaleExplorer(days=1)
    assert explorer.policy.description == "정책"
    assert explorer.cooldown.description == "쿨다운 s"


def test_self_check_answers_in_the_workbook_language(monkeypatch, capsys):
    from deploylab.widgets.selfcheck import SELF_CHECK_WORDS, check

    monkeypatch.setenv("DEPLOYLAB_LANG", "ko")
    assert check(2, 4, 5, "count the weights") is False
    assert (
        capsys.readouterr().out.strip()
        == "문항 2: 아쉽네요(적은 답: 4). 힌트(영어): count the weights"
    )
    korean = WIDGET_LABELS["ko"]["selfcheck"]
    assert set(korean) == set(SELF_CHECK_WORDS)
    for key, english in SELF_CHECK_WORDS.items():
        assert set(PLACEHOLDER.findall(korean[key])) == set(PLACEHOLDER.findall(english)), key
