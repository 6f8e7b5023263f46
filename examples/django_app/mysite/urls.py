from django.urls import path
from notes import views

urlpatterns = [
    path("notes/", views.notes),
    path("form/", views.form),
    path("upload/", views.upload),
    path("stream/", views.stream),
    path("file/", views.download),
    path("async/notes/", views.async_notes),
    path("items/", views.create_item),
    path("items/<int:item_id>/", views.read_item),
    path("slow/", views.slow),
    path("async/items/", views.async_create_item),
    path("async/items/<int:item_id>/", views.async_read_item),
    path("async/slow/", views.async_slow),
]
