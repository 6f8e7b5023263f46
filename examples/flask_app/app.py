"""A small Flask app served by juggler over WSGI.

    juggler --interface wsgi --app-dir examples/flask_app app:app

Routes: JSON in and out, a form with a file upload, a streamed response, a redirect, a
handled error (404 as JSON) and an unhandled one (500, logged by juggler).
"""

from __future__ import annotations

import hashlib
import time

from flask import Flask, jsonify, redirect, request, stream_with_context, url_for

app = Flask(__name__)
ITEMS: dict[int, dict] = {}


@app.get("/")
def home():
    return "flask home"


@app.post("/items")
def create_item():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return jsonify(error="expected a JSON object with a string 'name'"), 422
    item_id = len(ITEMS) + 1
    ITEMS[item_id] = {"id": item_id, "name": data["name"]}
    return jsonify(ITEMS[item_id]), 201


@app.get("/items/<int:item_id>")
def get_item(item_id: int):
    item = ITEMS.get(item_id)
    if item is None:
        return jsonify(error="not found"), 404
    return jsonify(item)


@app.post("/upload")
def upload():
    f = request.files.get("file")
    if f is None:
        return jsonify(error="no file"), 400
    data = f.read()
    return jsonify(
        title=request.form.get("title", ""),
        filename=f.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


@app.get("/stream")
def stream():
    count = int(request.args.get("n", "5"))

    @stream_with_context
    def generate():
        # request is still usable inside the generator thanks to stream_with_context
        who = request.args.get("who", "world")
        for i in range(count):
            yield f"data: {i} {who}\n\n"
            time.sleep(0.01)

    return app.response_class(generate(), mimetype="text/event-stream")


@app.get("/old")
def old():
    return redirect(url_for("home"))


class Teapot(Exception):
    pass


@app.errorhandler(Teapot)
def teapot(_exc: Teapot):
    return jsonify(error="short and stout"), 418


@app.get("/teapot")
def raise_teapot():
    raise Teapot()


@app.get("/crash")
def crash():
    raise RuntimeError("flask view crashed")
