from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from conversations.models import AgentSession


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Placeholder home page until the review UI lands: how many sessions are stored."""
    return render(request, "dashboard/home.html", {"session_count": AgentSession.objects.count()})
