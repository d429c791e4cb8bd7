"""Websocket routes (the live chat consumer lands here)."""

websocket_urlpatterns: list = []
