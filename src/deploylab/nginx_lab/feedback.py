"""Feedback for a rejected nginx configuration: nginx's own words, made safe to show.

nginx's error lines quote bits of the configuration they complain about. The grader shows
them to the learner (the issue asks for "nginx's own error line and which part of the config
to look at"), but only after :func:`safe_text`: grader paths become ``site.conf``, the
addresses the grader filled in become their placeholder names (so a hidden test's ports
never show), quoted pieces that are not short words or addresses become ``"…"`` (so a file
nginx was tricked into reading is never echoed), and only printable ASCII without ``<>&``
is kept, at most 300 characters.
"""

from __future__ import annotations

import re

__all__ = ["ConfigRejected", "block_path", "hint_for", "safe_text"]

_QUOTED = re.compile(r'"([^"]*)"')
#: Quoted pieces shown as they are: words, addresses, URLs, paths, placeholders, variables.
_SAFE_QUOTED = re.compile(
    r"^(?:[A-Za-z_][A-Za-z0-9_.\-]{0,40}"
    r"|(?:https?://)?[A-Za-z0-9_.\-]{1,60}(?::\d{1,5})?(?:/[A-Za-z0-9_./\-]{0,60})?"
    r"|/[A-Za-z0-9_./\-]{0,80}"
    r"|\$\{[A-Z][A-Z0-9_]{0,20}\}(?::\d{1,5})?"
    r"|\$[a-z_]{1,40}"
    r"|[a-z_]+=[A-Za-z0-9_.${}]{0,20})$"
)
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9 _.,:;\"'()\[\]{}$/=+*#@%!?~^|\\\-…]")
_SITE_PATH = re.compile(r"\S*/(site(?:-next)?\.conf):(\d+)")
_GRADER_PATH = re.compile(r"(/[^\s\"]*)?/dl-nginx-[^\s\"/]*")

#: nginx message pattern -> what to look at (first match wins).
HINTS: list[tuple[str, str]] = [
    (
        r'unknown directive "http"|"http" directive is not allowed',
        ("your text already goes inside http { }: write only upstream and server blocks"),
    ),
    (r"unknown directive", "a directive nginx does not know: check its spelling"),
    (
        r'"(location|listen|server_name)" directive is not allowed here',
        ("listen and location belong inside a server { } block"),
    ),
    (
        r'"(proxy_pass|proxy_set_header)" directive is not allowed here',
        ("proxy_pass and proxy_set_header belong inside server { } or location { }"),
    ),
    (
        r'"server" directive is not allowed here',
        (
            "a server { } block sits directly in http (your text); server ADDRESS; lines sit in upstream { }"
        ),
    ),
    (r"directive is not allowed here", "this directive is in the wrong block"),
    (r"is not terminated by", 'every directive ends with ";"'),
    (r'unexpected end of file|unexpected "}"', "the braces { } do not balance"),
    (r'unexpected "\{"', 'a directive before "{" is missing its ";" or its name'),
    (r"invalid number of arguments", "this directive has too many or too few values"),
    (
        r"host not found in upstream",
        ("nginx looks addresses up when it starts: use the address placeholders, e.g. ${APP}"),
    ),
    (
        r"no port in upstream|invalid port",
        "an address needs a port: 127.0.0.1:8080 (use the placeholders)",
    ),
    (r"duplicate upstream", "two upstream blocks have the same name"),
    (
        r"bind\(\) to .* failed",
        (
            "nginx could not listen there: listen on ${LISTEN}; the apps' addresses are taken by the apps"
        ),
    ),
    (
        r"open\(\) .* failed",
        (
            "nginx could not open a file your configuration names: the grader's nginx sees only its own directory"
        ),
    ),
    (r"cannot have URI part", "proxy_pass with a path is not allowed in this kind of location"),
    (
        r"invalid parameter",
        "a server line has a parameter nginx does not accept (weight=N, down, backup …)",
    ),
]


class ConfigRejected(AssertionError):
    """The learner's configuration cannot be checked further; ``str()`` is the feedback.

    The trusted tests (:mod:`deploylab.grading.trusted_tests`) show an exception's
    ``deploylab_message`` as it is: that is how this text, which quotes nginx, reaches the
    learner. Every caller builds it from :func:`safe_text` pieces and grader-written words.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.deploylab_message = message


def safe_text(text: str, values: dict[str, str] | None = None, limit: int = 300) -> str:
    """``text`` (an nginx message) with grader paths, filled-in addresses and long or odd
    quoted pieces taken out; printable ASCII only, at most ``limit`` characters.

    >>> safe_text('[emerg] unknown directive "proxy_pas" in /tmp/dl-nginx-x1/site.conf:4')
    '[emerg] unknown directive "proxy_pas" in line 4'
    >>> safe_text('[emerg] bind() to 127.0.0.1:9137 failed (98: Address in use)', {"APP": "127.0.0.1:9137"})
    '[emerg] bind() to ${APP} failed (98: Address in use)'
    >>> safe_text('[emerg] unknown directive "root:$y$j9T$abc:19000:0:99999:7:::" in /x/site.conf:1')
    '[emerg] unknown directive "…" in line 1'
    """
    text = _SITE_PATH.sub(lambda match: f"line {match.group(2)}", text)
    text = _GRADER_PATH.sub("(the lab's directory)", text)
    for name, value in sorted((values or {}).items(), key=lambda item: -len(item[1])):
        if ":" in value or value.count(".") == 3:
            text = text.replace(value, "${" + name + "}")

    def quoted(match: re.Match) -> str:
        piece = match.group(1)
        return f'"{piece}"' if _SAFE_QUOTED.match(piece) else '"…"'

    text = _QUOTED.sub(quoted, text)
    text = _UNSAFE_CHARACTERS.sub("?", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hint_for(message: str) -> str:
    """What to look at for nginx's ``message`` ('' if nothing specific).

    >>> hint_for('[emerg] "location" directive is not allowed here in /p/site.conf:3')
    'listen and location belong inside a server { } block'
    """
    for pattern, hint in HINTS:
        if re.search(pattern, message):
            return hint
    return ""


def block_path(template: str, line: int) -> str:
    """The blocks that line ``line`` (1-based) of ``template`` sits in, outermost first.

    >>> block_path("upstream app {\\n  server a;\\n}\\nserver {\\n  location / {\\n    proxy_pass x;\\n  }\\n}", 6)
    'server { location / {'
    """
    stack: list[str] = []
    for number, text in enumerate(template.splitlines(), start=1):
        if number == line:
            break
        text = text.split("#", 1)[0]
        pieces = re.split(r"([{};])", text)
        current = ""
        for piece in pieces:
            if piece == "{":
                stack.append(" ".join(current.split())[:40])
                current = ""
            elif piece == "}":
                if stack:
                    stack.pop()
                current = ""
            elif piece == ";":
                current = ""
            else:
                current += piece
    return " ".join(f"{name} {{" for name in (_block_name(header) for header in stack) if name)


def _block_name(header: str) -> str:
    """A block's name as feedback shows it: the directive, and its argument if that is a
    short word, address or path (``location /api``); never free text of the learner's."""
    words = header.split()
    if not words or not re.fullmatch(r"[a-z_]{1,30}", words[0]):
        return "…" if words else ""
    if len(words) >= 2 and _SAFE_QUOTED.match(words[-1]) and len(words) <= 3:
        return " ".join(word if _SAFE_QUOTED.match(word) else "…" for word in words)
    return words[0]


def rejection(what: str, message: str, template: str, values: dict[str, str]) -> ConfigRejected:
    """The feedback for nginx refusing ``template`` (``what``: "nginx -t rejected your
    configuration", "nginx did not start", …)."""
    shown = safe_text(message, values) or "(nginx said nothing)"
    parts = [f"{what}: {shown}"]
    match = re.search(r"site(?:-next)?\.conf:(\d+)", message)
    if match:
        where = block_path(template, int(match.group(1)))
        parts.append(f"look at line {match.group(1)}" + (f", inside {where}" if where else ""))
    hint = hint_for(message)
    if hint:
        parts.append(hint)
    return ConfigRejected(" — ".join(parts))
