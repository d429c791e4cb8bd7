"""The insights page (issue 16 item 5): latency and cost over time, per model, tool error rates,
the slowest and most expensive turns (``/insights/`` and its JSON twin ``/insights.json``)."""
