"""Flask: templates, JSON, forms, uploads, redirects, errors, static files, streaming."""

from pathlib import Path

from flask import Flask, Response, abort, jsonify, redirect, render_template_string, request

app = Flask(__name__, static_folder=str(Path(__file__).parent / "static"))


@app.route("/")
def home():
    return render_template_string(
        "<h1>{{ title }}</h1><p>{{ items|join(', ') }}</p>", title="flask", items=["a", "b"]
    )


@app.route("/json")
def data():
    return jsonify(ok=True, args=request.args.to_dict(flat=False))


@app.route("/form", methods=["POST"])
def form():
    files = {k: {"name": f.filename, "size": len(f.read())} for k, f in request.files.items()}
    return jsonify(form=request.form.to_dict(flat=False), files=files)


@app.route("/echo", methods=["POST", "PUT"])
def echo():
    return Response(request.get_data(), mimetype="application/octet-stream")


@app.route("/redirect")
def go():
    return redirect("/json?from=redirect")


@app.route("/abort")
def refused():
    abort(403)


@app.route("/boom")
def boom():
    raise RuntimeError("boom")


@app.route("/stream")
def stream():
    def gen():
        for i in range(5):
            yield f"line {i}\n"

    return Response(gen(), mimetype="text/plain")


@app.route("/cookie")
def cookie():
    r = Response("cookie")
    r.set_cookie("session_id", "abc", httponly=True, samesite="Lax")
    r.headers["X-Multi"] = "1"
    r.headers.add("X-Multi", "2")
    return r
