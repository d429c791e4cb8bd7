"""The JSON API at ``/api/v1/`` (django-ninja): sessions, turns, usage, annotations, review
statuses and score definitions, with an OpenAPI document and interactive docs.

- :mod:`.api`: the :class:`~ninja.NinjaAPI`, its error handlers (every error is JSON with a
  ``detail``), the routers;
- :mod:`.auth`: ``Authorization: Bearer <token>`` (``conversations.reviews`` tokens) or the
  session cookie (CSRF enforced for unsafe methods); the permissions of the pages;
- :mod:`.paths`: ids as percent-encoded path segments (routing on the undecoded path);
- :mod:`.sessions`, :mod:`.annotations`: the endpoints; :mod:`.schemas`: their shapes;
- :mod:`.views`: the in-app token page (``/account/tokens/``); :mod:`.urls`: both mounted.

Reads go through ``dashboard.review.selectors`` and ``conversations.exchange``, writes through
``conversations.reviews``, permissions through ``conversations.permissions`` (docs/api.md).
"""
