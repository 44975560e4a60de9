"""Views: widgets and plots that render core state or runtime events.

Each topic's widgets live in their own module here (``deploylab.widgets.vpc``,
``deploylab.widgets.request_flow``…). They import the topic code; nothing imports them.
Every widget has a static fallback (a matplotlib figure or text) for contexts without a
browser: executed notebooks, HTML exports, graders.
"""
