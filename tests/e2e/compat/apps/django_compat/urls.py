from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("json/", views.data),
    path("form/", views.form),
    path("redirect/", views.go),
    path("boom/", views.boom),
    path("stream/", views.stream),
    path("file/", views.file),
    path("admin/", admin.site.urls),
]
