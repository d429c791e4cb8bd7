"""Hostile-input suite: permissions, crafted frames, hostile content, races, imports (issue 12)."""
