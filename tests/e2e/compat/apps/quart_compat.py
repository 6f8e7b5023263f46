"""Quart: the Flask API over ASGI."""

from pathlib import Path

from quart import Quart, Response, abort, jsonify, redirect, request

app = Quart(__name__, static_folder=str(Path(__file__).parent / "static"))


@app.route("/")
async def home():
    return "<h1>quart</h1>"


@app.route("/json")
async def data():
    return jsonify(ok=True, args=request.args.to_dict(flat=False))


@app.route("/form", methods=["POST"])
async def form():
    f = await request.form
    files = await request.files
    sizes = {k: {"name": v.filename, "size": len(v.read())} for k, v in files.items()}
    return jsonify(form=f.to_dict(flat=False), files=sizes)


@app.route("/echo", methods=["POST"])
async def echo():
    return Response(await request.get_data(), mimetype="application/octet-stream")


@app.route("/redirect")
async def go():
    return redirect("/json?from=redirect")


@app.route("/abort")
async def refused():
    abort(418)


@app.route("/boom")
async def boom():
    raise RuntimeError("boom")


@app.route("/stream")
async def stream():
    async def gen():
        for i in range(5):
            yield f"line {i}\n".encode()

    return gen(), 200, {"Content-Type": "text/plain"}
