"""The widgets' own words (buttons, captions, hints) in each workbook language.

One mechanism for every widget: the English words live in the JavaScript as fallbacks, and
the words of the workbook's language (:func:`deploylab.i18n.current_language`, which
``deploylab lab --lang`` sets) are sent to the widget in its synced ``labels`` trait. A
label may hold ``{name}`` placeholders that the JavaScript fills in. Facts a widget shows
(addresses, counts, the explanations computed in Python) are not translated here.
"""

from __future__ import annotations

from typing import ClassVar

import anywidget
import traitlets

__all__ = ["WIDGET_LABELS", "LabelledWidget", "widget_labels"]

#: language → widget → label key → text. English is the JavaScript's own fallback text.
WIDGET_LABELS: dict[str, dict[str, dict[str, str]]] = {
    "ko": {
        "course_map": {
            "keys": "코스 지도: Space로 재생하거나 멈춥니다",
            "play": "재생",
            "pause": "일시 정지",
            "hint": "정거장을 누르면 하는 일과 배우는 레슨이 나옵니다.",
            "selected": "{name}: {summary} (레슨 {lesson})",
            "stop_button": "{name} (레슨 {lesson})",
            "aria": "요청이 지나가는 길, 레슨마다 한 정거장",
            "stop:client": "클라이언트",
            "stop:forward proxy": "포워드 프록시",
            "stop:internet": "인터넷",
            "stop:VPC + subnets": "VPC + 서브넷",
            "stop:reverse proxy": "리버스 프록시",
            "stop:nginx": "nginx",
            "stop:load balancer": "로드 밸런서",
            "stop:auto scaling group": "Auto Scaling 그룹",
            "stop:app instances": "앱 인스턴스",
            "summary:client": "노트북의 브라우저나 curl",
            "summary:forward proxy": "클라이언트 가까이: 캐시, 클라이언트 주소 숨김",
            "summary:internet": "IPv4 주소, 클래스, CIDR 블록",
            "summary:VPC + subnets": "퍼블릭/프라이빗/VPN 전용 서브넷, 라우팅 테이블",
            "summary:reverse proxy": "서버 가까이: 서버를 숨기고 X-Forwarded-For 전달",
            "summary:nginx": "실제 프록시: reload, 블루-그린, 롤링",
            "summary:load balancer": "라운드 로빈, 가중치, 최소 연결, ip_hash",
            "summary:auto scaling group": "최소/최대/원하는 용량, 정책, 헬스 체크",
            "summary:app instances": "스케일 업(더 크게) 또는 스케일 아웃(더 많이)",
        },
        "request_flow": {
            "keys": "요청 애니메이션: Space로 재생하거나 멈추고, →로 한 홉씩 나아갑니다",
            "play": "재생 ▶",
            "pause": "일시 정지 ❚❚",
            "step": "한 단계 ▸",
            "restart": "처음부터",
            "speed": "속도",
            "live": "실시간",
            "scripted": "시나리오",
            "hop": "홉 {n} / {total}",
            "waiting": "요청을 기다리는 중…",
            "from": "보낸 곳 {addr}",
        },
        "balancer": {
            "keys": "로드 밸런싱 애니메이션: Space로 재생하거나 멈추고, →로 다음 요청을 봅니다",
            "play": "재생",
            "pause": "일시 정지",
            "restart": "처음부터",
            "fail": "{name} 장애",
            "recover": "{name} 복구",
            "requests": "요청 {n}건",
            "open": "연결 {n}개",
            "down": "다운",
            "slot": "{client} → 슬롯 {hash}",
            "no_upstream": "502: 살아 있는 업스트림 없음",
            "request": "요청 {n}",
            "caption": "요청 {n} / {total} — 열마다 같은 요청에 nginx의 알고리즘을 돌립니다",
            "live_caption": "실시간: 점 하나가 실행 중인 밸런서가 전달한 요청 하나입니다",
        },
        "deploy_timeline": {
            "keys": "배포 재생: Space로 재생하거나 멈추고, →로 20분의 1만큼 나아갑니다",
            "play": "재생",
            "pause": "일시 정지",
            "replay": "다시 보기",
            "speed": "속도",
            "counter": "t={t} s  요청 {n}, 실패 {failed}",
        },
        "vpc_cidr": {
            "legend": "네트워크 비트 {network}개(파랑) | 호스트 비트 {host}개(회색)",
        },
        "vpc_graph": {
            "hint": "서브넷을 누르면 그 라우팅 테이블과 라우트가 가는 곳이 나옵니다.",
        },
        "vpc_plan": {
            "title": "{space}: 주소 {total}개",
            "hint": "서브넷이나 빈 공간을 눌러 보세요.",
        },
        "vpc_route": {
            "keys": "경로 조회: Space로 재생하거나 멈추고, →로 다음 경로와 비교합니다",
            "play": "재생",
            "pause": "일시 정지",
            "step": "한 단계",
            "hint": "재생이나 한 단계를 누르세요: 라우트마다 네트워크 비트를 목적지와 비교합니다.",
        },
        "slide_mode": {
            "back": "◂ 이전",
            "next": "다음 ▸",
            "counter": "슬라이드 {n} / {total}",
            "no_notes": "(이 슬라이드에는 발표자 노트가 없습니다)",
            "leave": "슬라이드 끝내기 (Esc)",
            "present": "슬라이드로 발표하기",
        },
        "demos": {  # deploylab.widgets.demos: the instructor's demo buttons
            "a backend dies mid-traffic": "트래픽 중에 백엔드가 죽는다",
            "a cached page goes stale": "캐시된 페이지가 오래된다",
            "a flash crowd hits": "갑자기 사람이 몰린다",
            "reload a broken nginx config": "망가진 nginx 설정으로 reload",
            "remove the route to the internet": "인터넷으로 가는 경로를 지운다",
            "put the route back": "경로를 되돌린다",
            "running…": "실행 중…",
            "demo failed: {error}": "데모 실패: {error}",
        },
        "selfcheck": {  # deploylab.widgets.selfcheck.check; the hints stay in the code cells
            "unanswered": "문항 {question}: 아직 답하지 않았습니다. None 자리에 예측을 적고 셀을 실행하세요.",
            "right": "문항 {question}: 맞았습니다.",
            "wrong": "문항 {question}: 아쉽네요(적은 답: {answer}). 힌트(영어): {hint}",
        },
        "autoscale": {
            "policy": "정책",
            "trace": "트래픽",
            "target %": "목표 %",
            "cooldown s": "쿨다운 s",
            "warm-up s": "워밍업 s",
            "min": "최소",
            "max": "최대",
        },
    },
}


def widget_labels(widget: str, lang: str | None = None) -> dict[str, str]:
    """The labels of ``widget`` in ``lang`` (default: the workbook's current language); empty
    for English, whose words are the widgets' own.

    >>> widget_labels("balancer", "ko")["play"]
    '재생'
    >>> widget_labels("balancer", "en")
    {}
    """
    if lang is None:
        from deploylab.i18n.languages import current_language

        lang = current_language().code
    return dict(WIDGET_LABELS.get(lang, {}).get(widget, {}))


class LabelledWidget(anywidget.AnyWidget):
    """An anywidget whose ``labels`` trait holds its words in the workbook's language.

    >>> class Demo(LabelledWidget):
    ...     label_table = "balancer"
    >>> import os
    >>> os.environ["DEPLOYLAB_LANG"] = "ko"
    >>> Demo().labels["restart"]
    '처음부터'
    >>> del os.environ["DEPLOYLAB_LANG"]
    >>> Demo().labels
    {}
    """

    label_table: ClassVar[str] = ""
    labels = traitlets.Dict().tag(sync=True)

    @traitlets.default("labels")
    def _labels_of_the_workbook_language(self) -> dict[str, str]:
        return widget_labels(self.label_table)
