"""Tests of conversations/session.py: DjangoSession against the SDK."""
