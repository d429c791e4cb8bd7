"""The offline demo: a model that needs no network, the demo agent and its tools, the seed data.

``model`` is the deterministic offline ``agents.Model`` (it knows no tool by name: tools bring
their own :class:`~dashboard.demo.model.OfflineIntent`); ``tools`` holds the demo tools and
their intents; ``agent`` the demo agent (``dashboard.agents.demo_agent``); ``seed`` the demo
conversations written by ``manage.py seed_demo``.
"""

from __future__ import annotations
