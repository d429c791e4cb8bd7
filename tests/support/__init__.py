"""Helpers shared by the test packages (login cookies, usage sources, ...)."""
