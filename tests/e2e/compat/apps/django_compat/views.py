from pathlib import Path

from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt

STATIC = Path(__file__).resolve().parent.parent / "static"


def home(request):
    return HttpResponse("<h1>django</h1>")


def data(request):
    return JsonResponse({"q": dict(request.GET.lists()), "method": request.method})


@csrf_exempt
def form(request):
    files = {k: {"name": f.name, "size": f.size} for k, f in request.FILES.items()}
    return JsonResponse({"form": dict(request.POST.lists()), "files": files})


def go(request):
    return HttpResponseRedirect("/json/?from=redirect")


def boom(request):
    raise RuntimeError("boom")


def stream(request):
    return StreamingHttpResponse((f"row {i}\n" for i in range(5)), content_type="text/plain")


def file(request):
    return FileResponse(open(STATIC / "data.bin", "rb"), content_type="application/octet-stream")
