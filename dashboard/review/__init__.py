"""The review UI: the session list and search, a session's branches turn by turn, the usage
charts' JSON twin, branch compare and the preferred-branch mark.

``selectors/`` reads (page-shaped frozen dataclasses, a fixed number of queries each, domain
exceptions for unknown sessions and branches); ``views.py`` maps requests to selectors and
those exceptions to 404; ``urls.py`` holds the routes, included by ``dashboard/urls.py``.
"""
