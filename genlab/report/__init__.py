"""Reports over finished runs, in four steps kept apart: find (run and sweep folders, their images),
read (metrics.json and curves into RunRecords), judge (best per column, protocol and config differences)
and render (a Document of tables, figures and galleries, through jinja2 templates to HTML and markdown).
`comparison.py` lays out `genlab compare`'s report; `figures.py` draws its curves."""
