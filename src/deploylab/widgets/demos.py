"""Demo buttons: the classic moments of each lesson, triggered on the lesson's live objects.

An instructor in front of a class presses a button instead of typing code: a backend dies
mid-traffic (lesson 02), a cached page goes stale (01), a bad nginx configuration is reloaded
(04), a route is removed (05). Each :class:`Demo` acts on the *real* running servers or model
the lesson built (a process is really killed, a cache entry really ages, nginx really gets the
broken file) and returns a sentence saying what happened, measured afterwards from the same
objects. :class:`DemoPanel` shows the lesson's main widget with one button per demo under it;
the buttons are ordinary ipywidgets buttons, so they have accessible names and work with Tab
and Enter, also in slide mode.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import ipywidgets

from deploylab.widgets.labels import widget_labels

__all__ = [
    "Demo",
    "DemoPanel",
    "backend_dies_demo",
    "bad_reload_demo",
    "flash_crowd_demo",
    "route_removed_demo",
    "stale_cache_demo",
]


def _say(english: str, **values) -> str:
    """``english`` in the workbook's language (the ``demos`` table of
    :data:`~deploylab.widgets.labels.WIDGET_LABELS`), ``{name}`` filled from ``values``.

    >>> _say("demo failed: {error}", error="boom")
    'demo failed: boom'
    """
    return widget_labels("demos").get(english, english).format(**values)


@dataclass(frozen=True)
class Demo:
    """One button: ``label`` (its accessible name), ``explanation`` (its tooltip) and
    ``run``, which acts on the live objects and returns what happened (it may be async).
    ``facts`` holds what the last run measured (pids, states, counts), for tests and cells."""

    label: str
    explanation: str
    run: Callable[[], Awaitable[str] | str]
    facts: dict = field(default_factory=dict, compare=False)


class DemoPanel(ipywidgets.VBox):
    """The lesson's main widget (or nothing) with one button per :class:`Demo` under it and
    a line that says what the last demo did (announced to screen readers).

    >>> panel = DemoPanel(None, [Demo("say hi", "prints hi", lambda: "hi")])
    >>> [button.description for button in panel.buttons]
    ['say hi']
    >>> asyncio.run(panel.press("say hi"))
    'hi'
    >>> panel.outcome.value  # announced to screen readers
    '<span role="status">hi</span>'
    """

    def __init__(self, widget, demos: Sequence[Demo]) -> None:
        self.demos = {demo.label: demo for demo in demos}
        self.buttons = [
            ipywidgets.Button(
                description=_say(demo.label),
                tooltip=demo.explanation,
                layout=ipywidgets.Layout(width="auto"),
            )
            for demo in demos
        ]
        for button, demo in zip(self.buttons, demos, strict=True):
            button.add_class("dl-demo-button")
            button.on_click(lambda _button, demo=demo: self._start(demo))
        self.outcome = ipywidgets.HTML("")
        self.outcome.add_class("dl-demo-outcome")
        self._tasks: set[asyncio.Task] = set()
        row = ipywidgets.HBox(self.buttons, layout=ipywidgets.Layout(flex_flow="row wrap"))
        row.add_class("dl-demo-buttons")
        super().__init__([*([widget] if widget is not None else []), row, self.outcome])
        self.add_class("dl-demo-panel")

    async def press(self, label: str) -> str:
        """Run the demo named ``label`` (what its button does); returns what happened."""
        try:
            demo = self.demos[label]
        except KeyError:
            raise ValueError(
                f"no demo {label!r}: expected one of {', '.join(self.demos)}"
            ) from None
        for button in self.buttons:
            button.disabled = True
        self.outcome.value = _say("running…")
        try:
            result = demo.run()
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:  # shown to the class; the servers keep running
            result = _say("demo failed: {error}", error=f"{type(error).__name__}: {error}")
        finally:
            for button in self.buttons:
                button.disabled = False
        self.outcome.value = f'<span role="status">{_escape(result)}</span>'
        return result

    def _start(self, demo: Demo) -> None:
        # A click arrives inside the kernel's event loop: run the demo beside the cells.
        task = asyncio.get_event_loop().create_task(self.press(demo.label))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


# ---------------------------------------------------------------------------------------
# the classic moments, each acting on a lesson's live objects
# ---------------------------------------------------------------------------------------


def backend_dies_demo(balancer, requests: int = 24, kill_after: int = 8) -> Demo:
    """Lesson 02: a real backend *process* joins ``balancer``, traffic starts, and after
    ``kill_after`` requests the process is killed with SIGKILL while traffic continues.

    What happened is measured: the process is gone, the balancer's state for it (its
    passive health check marks it ``failed``), and the statuses the clients saw (the
    balancer retries a refused connection on another backend, like nginx's
    ``proxy_next_upstream error``). The traffic is bounded: ``requests`` requests.
    """
    facts: dict = {}

    async def run() -> str:
        from deploylab.balancer.backend import read_backend_url, start_backend_process
        from deploylab.proxy.client import fetch

        process = start_backend_process("doomed")
        facts.clear()
        facts["pid"] = process.pid
        try:
            url = await asyncio.to_thread(read_backend_url, process)
            peer = balancer.add_backend(url)
            statuses = []
            for number in range(requests):
                if number == kill_after:
                    os.killpg(process.pid, signal.SIGKILL)
                    await asyncio.to_thread(process.wait, 10)
                reply = await fetch(balancer.url + "/", timeout=5)
                statuses.append(reply.status)
                await asyncio.sleep(0.05)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait, 10)
            if process.stdout is not None:  # start_backend_process pipes it
                process.stdout.close()
        row = next(r for r in balancer.status()["backends"] if r["backend"] == peer.name)
        served = sum(1 for status in statuses if status == 200)
        facts.update(
            backend=peer.name,
            exit_code=process.returncode,
            state=row["state"],
            failures=row["failures"],
            statuses=statuses,
        )
        return (
            f"backend 'doomed' ({url}, pid {process.pid}) was killed after {kill_after} "
            f"requests: process exit code {process.returncode}; the balancer now says "
            f"'{row['state']}' after {row['failures']} failed attempt(s); "
            f"{served} of {len(statuses)} requests still got 200"
        )

    return Demo(
        "a backend dies mid-traffic",
        "starts a real backend process, sends traffic, kills the process half-way",
        run,
        facts,
    )


def stale_cache_demo(proxy, page_url: str, source: str | None = None) -> Demo:
    """Lesson 01: the forward ``proxy``'s stored copy of ``page_url`` ages past its
    freshness lifetime (its stored times move back, as if that much time had passed), then
    the page is fetched again through the proxy: a stale entry must go back to the origin.
    """

    async def run() -> str:
        from deploylab.proxy.cache import freshness_lifetime
        from deploylab.proxy.client import fetch

        first = await fetch(page_url, proxy=proxy.url, source=source)
        stored = proxy.cache.lookup("GET", page_url, [])
        if stored is None:
            return f"{page_url} is not in the cache (X-Cache: {first.header('X-Cache')})"
        lifetime = freshness_lifetime(stored.response.headers)
        stored.request_time -= lifetime + 1
        stored.response_time -= lifetime + 1
        misses = proxy.cache.misses
        again = await fetch(page_url, proxy=proxy.url, source=source)
        went_to_origin = proxy.cache.misses > misses or again.header("X-Cache") != "HIT"
        return (
            f"the cached copy of {page_url} is now {int(stored.age(_now()))} s old "
            f"(fresh for {int(lifetime)} s): the next request said X-Cache "
            f"{again.header('X-Cache')}, "
            + ("so the proxy asked the origin again" if went_to_origin else "served stale!")
        )

    return Demo(
        "a cached page goes stale",
        "ages the proxy's stored copy past its max-age, then asks for the page again",
        run,
    )


def _now() -> float:
    import time

    return time.time()


def bad_reload_demo(nginx, good_config: str, ask: Callable[[], str]) -> Demo:
    """Lesson 04: ``nginx.reload`` a copy of ``good_config`` with a misspelt directive on the
    running nginx. nginx refuses it (``nginx -t`` fails), and ``ask()`` (a request through
    nginx) shows that the old workers still answer."""

    def run() -> str:
        from deploylab.nginx import NginxConfigError

        broken = good_config.replace("proxy_pass", "proxy_passs", 1)
        master = nginx.pid
        try:
            nginx.reload(broken)
            refused = "nginx accepted it?!"
        except NginxConfigError as error:
            refused = f"nginx refused it ({str(error).splitlines()[0][:120]})"
        return (
            f"reloaded a config with 'proxy_passs': {refused}; master pid {master} → "
            f"{nginx.pid}; the next request was answered by {ask()}"
        )

    return Demo(
        "reload a broken nginx config",
        "reloads the running nginx with a misspelt directive and sends a request",
        run,
    )


def route_removed_demo(vpc, graph, table: str, source: str, destination: str = "internet"):
    """Lesson 05: remove ``table``'s default route (``0.0.0.0/0``) from the live design, and
    put it back; after each, ``vpc.reach(source, destination)`` is asked again and drawn on
    ``graph``. Returns the two demos (remove, put back)."""
    removed: list = []

    def answer() -> str:
        reach = vpc.reach(source, destination)
        graph.show_reach(reach)
        return reach.reason

    def remove() -> str:
        if not removed:
            removed.append(vpc.route_tables[table].remove_route("0.0.0.0/0"))
        return f"{table} has no route to 0.0.0.0/0 now: {source} → {destination}: {answer()}"

    def put_back() -> str:
        if removed:
            route = removed.pop()
            vpc.route_tables[table].add_route(route.destination, route.target)
        return f"{table} routes 0.0.0.0/0 again: {source} → {destination}: {answer()}"

    return [
        Demo(
            "remove the route to the internet",
            f"removes 0.0.0.0/0 from {table} and asks again whether {source} reaches {destination}",
            remove,
        ),
        Demo("put the route back", f"adds 0.0.0.0/0 back to {table}", put_back),
    ]


def flash_crowd_demo(explorer, factor: float = 5.0, minutes: int = 45) -> Demo:
    """Lesson 03: a flash crowd hits the autoscaler ``explorer`` simulates: ``factor`` times
    the traffic for ``minutes`` in the middle of its trace (the trace it really runs), then
    the policy is run again and the peak group size and SLO violations compared."""

    def run() -> str:
        before = explorer.result.metrics
        explorer.add_flash_crowd(factor=factor, minutes=minutes)
        after = explorer.result.metrics
        return (
            f"{factor:g}x the traffic for {minutes} min: peak instances "
            f"{before['max_instances']} → {after['max_instances']}, SLO violated "
            f"{before['slo_violation_fraction']:.1%} → {after['slo_violation_fraction']:.1%} "
            f"of the time, dropped requests {before['dropped_requests']:.0f} → "
            f"{after['dropped_requests']:.0f}"
        )

    return Demo(
        "a flash crowd hits",
        f"puts {factor:g}x the traffic into the middle of the trace and re-runs the policy",
        run,
    )
