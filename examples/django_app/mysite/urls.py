from django.urls import path
from notes import views

urlpatterns = [
    path("notes/", views.notes),
    path("form/", views.form),
    path("upload/", views.upload),
    path("stream/", views.stream),
    path("file/", views.download),
    path("async/notes/", views.async_notes),
]
