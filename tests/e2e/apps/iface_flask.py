"""A Flask (WSGI) app for the --interface tests."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def home():
    return "flask home"
