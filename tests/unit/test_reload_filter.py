"""Which changed files make --reload restart the workers (the file watcher's filter)."""

from __future__ import annotations

from juggler.reloader import FileFilter


def test_python_files_reload_and_hidden_or_compiled_ones_do_not():
    f = FileFilter((), (), ["/home/u/.projects/app"])
    # The watched directory's own parents (here a hidden one) do not count.
    assert f(None, "/home/u/.projects/app/main.py")
    assert f(None, "/home/u/.projects/app/pkg/views.py")
    assert not f(None, "/home/u/.projects/app/.venv/lib/site.py")
    assert not f(None, "/home/u/.projects/app/main.pyc")
    assert not f(None, "/home/u/.projects/app/.main.py.swp")
    assert not f(None, "/home/u/.projects/app/notes.txt")


def test_include_and_exclude_globs_add_to_the_defaults():
    f = FileFilter(("*.html",), ("tmp/*", "generated"), ["/srv"])
    assert f(None, "/srv/templates/index.html")
    assert f(None, "/srv/app.py"), "*.py still reloads"
    assert not f(None, "/srv/tmp/page.html"), "a path glob below the watched directory"
    assert not f(None, "/srv/generated/models.py"), "a directory name"
    assert not f(None, "/srv/.cache/x.py"), "the default excludes still apply"
