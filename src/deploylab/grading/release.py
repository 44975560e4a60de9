"""Student versions of the labs: ``autograder/source/<lab>/`` → ``labs/<lab>/``.

nbgrader's own ``generate_assignment`` converter does the work in-process (solutions replaced
by stubs, hidden tests removed, checksums computed, source cells saved in the gradebook), so
formgrader and ``nbgrader autograde`` keep working. We then copy ``release/<lab>/`` into
``labs/<lab>/`` in a canonical form so the output is byte-identical from run to run and CI
can check it with ``git diff --exit-code labs/``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from deploylab.grading.course import Course, CourseError, file_digest

__all__ = [
    "canonical_notebook_text",
    "generate_with_nbgrader",
    "release",
    "release_lab",
    "student_version",
]


def canonical_notebook_text(notebook) -> str:
    """The one serialisation we commit: no outputs, no execution counts, sorted keys.

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", id="a")])
    >>> nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="2")]
    >>> '"outputs": []' in canonical_notebook_text(nb)
    True
    """
    import nbformat

    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
    notebook.metadata.pop("widgets", None)
    return nbformat.writes(notebook, version=4) + "\n"


@contextlib.contextmanager
def _captured_log(logger: logging.Logger):
    """Collect nbgrader's warnings and errors instead of letting them reach the terminal."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(
                record.getMessage().strip().splitlines()[-1] if record.getMessage().strip() else ""
            )

    handler = Collect(logging.WARNING)
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _check_source(course: Course, lab: str) -> None:
    import nbformat

    path = course.source_notebook(lab)
    try:
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    except Exception as error:  # nbformat raises several unrelated types
        raise CourseError(f"{path} is not a readable notebook: {error}") from error
    if (
        notebook.nbformat != 4
        or notebook.nbformat_minor < 5
        or any("id" not in cell for cell in notebook.cells)
    ):
        # Without stored cell ids nbformat invents random ones on every read, and the
        # released notebook would change each time we generate it.
        raise CourseError(
            f"{path} must be nbformat 4.5 or later with an id on every cell "
            "(build it with nbformat.v4.new_notebook / new_*_cell, or save it once in JupyterLab)"
        )
    grade_ids = [
        cell.metadata["nbgrader"]["grade_id"]
        for cell in notebook.cells
        if "grade_id" in cell.metadata.get("nbgrader", {})
    ]
    duplicates = sorted({grade_id for grade_id in grade_ids if grade_ids.count(grade_id) > 1})
    if duplicates:
        raise CourseError(f"{path}: grade_id {duplicates[0]!r} is used by more than one cell")


def generate_with_nbgrader(course: Course, lab: str) -> Path:
    """Run nbgrader's ``generate_assignment`` for ``lab`` in-process; returns ``release/<lab>/``.

    Also records the lab's cells (hidden tests included) in the gradebook, as nbgrader does.
    """
    from nbgrader.converters import GenerateAssignment

    lab = course.check_lab(lab)
    _check_source(course, lab)
    coursedir = course.coursedir(lab)
    converter = GenerateAssignment(coursedir=coursedir, config=course.nbgrader_config())
    converter.force = True
    converter.create_assignment = True
    with _captured_log(converter.log) as messages:
        try:
            converter.start()
        except Exception as error:
            details = "; ".join(messages[-3:]) or str(error)
            raise CourseError(f"nbgrader could not generate lab {lab!r}: {details}") from error
    # Remember which source the gradebook now holds, so autograde need not regenerate it.
    state = course.read_state("release.json")
    state[lab] = file_digest(course.source_notebook(lab))
    course.write_state("release.json", state)
    return lab.release_dir


def release_lab(course: Course, lab: str) -> list[Path]:
    """Generate one lab with nbgrader and write ``labs/<lab>/``; returns the files written."""
    released = generate_with_nbgrader(course, lab)
    target = course.labs_dir / lab
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    wanted = {path.relative_to(released) for path in released.rglob("*") if path.is_file()}
    for stale in sorted(target.rglob("*"), reverse=True):
        relative = stale.relative_to(target)
        if stale.is_file() and relative not in wanted:
            stale.unlink()
        elif stale.is_dir() and not any(stale.iterdir()):
            stale.rmdir()
    for relative in sorted(wanted):
        source, destination = released / relative, target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".ipynb":
            import nbformat

            text = canonical_notebook_text(nbformat.read(source, as_version=4))
            destination.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(source, destination)
        written.append(destination)
    return written


def release(course: Course, labs: list[str] | None = None) -> dict[str, list[Path]]:
    """Release ``labs`` (default: every lab in the course); returns the files per lab."""
    return {lab: release_lab(course, lab) for lab in (labs or course.labs())}


def student_version(course: Course, lab: str):
    """The released notebook of ``lab`` as nbgrader generated it (read from ``labs/``)."""
    import nbformat

    path = course.release_notebook(lab)
    if not path.is_file():
        release_lab(course, lab)
    return nbformat.read(path, as_version=4)
