"""Helpers of the admin tests: admin URLs, staff users with some permissions, a message edit."""

from __future__ import annotations

from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from conversations.models import AgentMessage


def staff_with(client, *codenames: str):
    """The test client, logged in as staff holding only the ``conversations`` ``codenames``."""
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    for codename in codenames:
        staff.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(staff)
    return client


def change_url(model: str, pk) -> str:
    return reverse(f"admin:conversations_{model}_change", args=[quote(pk)])


def message(**lookup) -> AgentMessage:
    return AgentMessage.objects.get(**lookup)


def edit(client, msg: AgentMessage, text: str):
    """POST ``text`` as the item JSON of ``msg``'s admin page."""
    return client.post(change_url("agentmessage", msg.pk), {"message_data": text})
