from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "body": self.body}


class Item(models.Model):
    """The row the examples read, insert and compare across frameworks."""

    name = models.CharField(max_length=200)
    price = models.FloatField()

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "price": self.price}
