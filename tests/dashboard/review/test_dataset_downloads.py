"""``export_dataset`` (file, stdout, progress, errors) and the dataset download (who may,
the list's filters, bad input)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from conversations import reviews
from conversations.exchange import finetune_problems
from conversations.models import ScoreDefinition
from tests.conftest import grant
from tests.support.builders import Writer, turn_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    ScoreDefinition.objects.create(name="quality", kind="numeric", min_value=1, max_value=5)
    for sid in ("one", "two", "three"):
        w = Writer(sid)
        w.turn(turn_items(1))
        w.turn(turn_items(2, tool=True))
    reviews.tag_add(user=alice, target=reviews.Target("two"), tag="gold")
    reviews.score_set(
        user=alice, target=reviews.Target("two", "main", 1), definition="quality", value=4
    )
    return alice


def test_command_writes_a_file_with_progress(data, tmp_path, capsys):
    path = tmp_path / "ft.jsonl"
    call_command("export_dataset", "--format", "finetune", "-o", str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 and all(finetune_problems(line) == [] for line in lines)
    err = capsys.readouterr().err
    assert "0/3 sessions" in err and "3/3 sessions" in err
    assert "6 line(s) from 3 session(s)" in err


def test_command_filters_and_stdout(data, capsys):
    call_command("export_dataset", "--format", "eval", "--filter", "tag=gold", "--quiet")
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["session_id"] for r in rows} == {"two"} and err == ""
    assert rows[0]["scores"][0]["value"] == 4.0
    call_command(
        "export_dataset", "--format", "annotations", "--filter", "score=quality", "--quiet"
    )
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0][0] == "session" and [r[3] for r in table[1:]] == ["tag", "score"]


def test_command_refuses_bad_input(data, tmp_path):
    with pytest.raises(CommandError, match="score definition"):
        call_command("export_dataset", "--branch", "best")
    with pytest.raises(CommandError, match="no score definition 'nope'"):
        call_command("export_dataset", "--branch", "best", "--score", "nope")
    with pytest.raises(CommandError, match="KEY=VALUE"):
        call_command("export_dataset", "--filter", "tag")
    with pytest.raises(CommandError):
        call_command("export_dataset", "--format", "xml")
    missing = tmp_path / "named.jsonl"
    call_command("export_dataset", "--branch", "nowhere", "-o", str(missing), "--quiet")
    assert missing.read_text() == ""  # no session has that branch: an empty dataset


def test_download_permissions(client, data, django_user_model):
    url = reverse("dataset_export")
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    nobody = django_user_model.objects.create_user("nobody")
    client.force_login(nobody)
    assert client.get(url).status_code == 403
    viewer = grant(django_user_model.objects.create_user("viewer"), "view_agentsession")
    client.force_login(viewer)
    response = client.get(url)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].startswith('attachment; filename="forkview-finetune-')
    body = b"".join(response.streaming_content).decode()
    assert int(response["Content-Length"]) == len(body.encode())
    assert len(body.splitlines()) == 6
    assert client.post(url).status_code == 405


def test_download_carries_the_lists_filters(reviewer_client, data):
    url = reverse("dataset_export")
    response = reviewer_client.get(url, {"format": "eval", "tag": "gold", "branch": "main"})
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert {r["session_id"] for r in rows} == {"two"}
    csv_response = reviewer_client.get(url, {"format": "annotations", "status": "reviewed"})
    assert csv_response["Content-Type"].startswith("text/csv")
    assert b"".join(csv_response.streaming_content).decode().splitlines() == [
        "session,branch,turn,kind,definition,value,label,body,author,created_at"
    ]
    best = reviewer_client.get(url, {"branch": "best:quality"})
    assert best.status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"format": "xml"},
        {"branch": "best:nope"},
        {"branch": "best:"},
        {"format": "eval", "branch": "best"},
    ],
)
def test_download_bad_input_is_a_400(reviewer_client, data, params):
    response = reviewer_client.get(reverse("dataset_export"), params)
    assert response.status_code == 400
    assert response.content and b"Traceback" not in response.content


def test_big_download_streams_from_a_file(reviewer_client, data, monkeypatch):
    from conversations import views

    monkeypatch.setattr(views, "SPOOL_MAX_BYTES", 100)
    response = reviewer_client.get(reverse("dataset_export"))
    body = b"".join(response.streaming_content)
    assert len(body.splitlines()) == 6 and int(response["Content-Length"]) == len(body)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("spool_max", [100, 10**6], ids=["from-a-file", "from-memory"])
def test_download_under_asgi_streams_asynchronously(
    data, django_user_model, monkeypatch, spool_max
):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from conversations import views

    monkeypatch.setattr(views, "SPOOL_MAX_BYTES", spool_max)
    monkeypatch.setattr(views, "BLOCK_BYTES", 200)
    viewer = grant(django_user_model.objects.create_user("viewer"), "view_agentsession")
    client = AsyncClient()
    client.force_login(viewer)

    async def download() -> tuple[object, list[bytes]]:
        response = await client.get(reverse("dataset_export"), {"format": "eval"})
        # An async iterator: Django would read a sync one whole into memory under ASGI.
        return response, [block async for block in response.streaming_content]

    response, blocks = async_to_sync(download)()
    body = b"".join(blocks)
    assert len(body.splitlines()) == 6 and int(response["Content-Length"]) == len(body)
    assert (len(blocks) > 3) == (spool_max == 100)
