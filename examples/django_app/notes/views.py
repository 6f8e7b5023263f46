"""Sync views (served over WSGI threads) and async views (served over ASGI)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from .models import Note

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
