"""nbgrader configuration of the deploylab course (this directory is the course root).

`deploylab grade ...` loads this file itself (nbgrader's Python API does not), and plain
`nbgrader ...` commands run from this directory read it too, so formgrader keeps working.
"""

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "deploylab"
# Labs are one notebook each: autograder/source/<lab>/<lab>.ipynb.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# nbgrader's per-cell limit; `deploylab grade autograde` adds a whole-notebook limit on top.
c.Execute.timeout = 30
# Put back grade cells a student deleted, so they are graded instead of waiting forever.
c.OverwriteCells.add_missing_cells = True
