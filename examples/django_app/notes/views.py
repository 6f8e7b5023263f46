"""Sync views (served over WSGI threads) and async views (served over ASGI).

The items views are the examples' three database endpoints (read a row, insert a row, a slow
query) in both styles. Django's async ORM (``aget``, ``asave``) and ``sync_to_async`` run the
query itself in a thread (Django 5 has no async database driver), so an async view frees the
event loop, not a thread, while it waits.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from .models import Item, Note

DOWNLOAD = Path(tempfile.gettempdir()) / "juggler-notes-download.bin"


def _note_from_json(raw: bytes) -> Note | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("title"), str):
        return None
    return Note(title=data["title"], body=str(data.get("body", "")))


@csrf_exempt
def notes(request):
    """GET lists the notes, POST (JSON) adds one: the ORM, synchronously."""
    if request.method == "POST":
        note = _note_from_json(request.body)
        if note is None:
            return JsonResponse({"error": "expected {'title': str}"}, status=422)
        note.save()
        return JsonResponse(note.as_dict(), status=201)
    return JsonResponse({"notes": [n.as_dict() for n in Note.objects.order_by("id")]})


def form(request):
    """An HTML form protected by Django's CSRF middleware."""
    if request.method == "POST":
        title = request.POST.get("title", "").strip()
        if not title:
            return HttpResponseBadRequest("title required")
        note = Note.objects.create(title=title, body=request.POST.get("body", ""))
        return HttpResponse(f"saved {note.id}")
    return render(request, "notes/form.html")


@csrf_exempt
def upload(request):
    """A multipart upload, read by Django's parser from wsgi.input."""
    f = request.FILES.get("file")
    if f is None:
        return HttpResponseBadRequest("no file")
    digest = hashlib.sha256()
    size = 0
    for chunk in f.chunks():
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse(
        {
            "name": f.name,
            "size": size,
            "sha256": digest.hexdigest(),
            "note": request.POST.get("note"),
        }
    )


def stream(request):
    count = int(request.GET.get("n", "5"))

    def rows():
        for i in range(count):
            yield f"row {i}\n"
            time.sleep(0.005)

    return StreamingHttpResponse(rows(), content_type="text/plain")


def download(request):
    """A file response: juggler sends it through wsgi.file_wrapper without Python reading it."""
    if not DOWNLOAD.exists():
        # Written aside then renamed: a server in another process never sees half a file.
        part = DOWNLOAD.with_suffix(f".{os.getpid()}.part")
        part.write_bytes(bytes(range(256)) * 4096)
        part.replace(DOWNLOAD)
    return FileResponse(DOWNLOAD.open("rb"), content_type="application/octet-stream")


@csrf_exempt
async def async_notes(request):
    """The same as ``notes`` with Django's async ORM: awaits instead of blocking a thread."""
    if request.method == "POST":
        note = _note_from_json(request.body)
        if note is None:
            return JsonResponse({"error": "expected {'title': str}"}, status=422)
        await note.asave()
        return JsonResponse(note.as_dict(), status=201)
    found = [n.as_dict() async for n in Note.objects.order_by("id")]
    return JsonResponse({"notes": found, "async": True})


def _item_from_json(raw: bytes) -> Item | None:
    """An unsaved Item from a JSON body, or None when it is not {name: str, price: >= 0}."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name, price = data.get("name"), data.get("price")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        return None
    if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
        return None
    return Item(name=name, price=float(price))


def _slow_query() -> JsonResponse:
    if connection.vendor != "postgresql":
        return JsonResponse({"error": "the slow query needs PostgreSQL (DATABASE_URL)"}, status=501)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01)")
    return JsonResponse({"slept_ms": 10})


@csrf_exempt
def create_item(request):
    if request.method != "POST":
        return JsonResponse({"error": "POST a JSON item"}, status=405)
    item = _item_from_json(request.body)
    if item is None:
        return JsonResponse({"error": "expected {'name': str, 'price': number >= 0}"}, status=422)
    item.save()
    return JsonResponse(item.as_dict(), status=201)


def read_item(request, item_id: int):
    item = Item.objects.filter(id=item_id).first()
    if item is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse(item.as_dict())


def slow(request):
    """``SELECT pg_sleep(0.01)``: holds this WSGI thread for 10 ms."""
    return _slow_query()


@csrf_exempt
async def async_create_item(request):
    if request.method != "POST":
        return JsonResponse({"error": "POST a JSON item"}, status=405)
    item = _item_from_json(request.body)
    if item is None:
        return JsonResponse({"error": "expected {'name': str, 'price': number >= 0}"}, status=422)
    await item.asave()
    return JsonResponse(item.as_dict(), status=201)


async def async_read_item(request, item_id: int):
    item = await Item.objects.filter(id=item_id).afirst()
    if item is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse(item.as_dict())


async def async_slow(request):
    """The same query through sync_to_async: the event loop serves others meanwhile."""
    return await sync_to_async(_slow_query)()
