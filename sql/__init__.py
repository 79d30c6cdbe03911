"""The SQL that builds the warehouse, shipped inside the wheel as ``mallscore.sql`` (see pyproject.toml).

A regular package (not a namespace) so that editable installs resolve it too; read it
through :mod:`mallscore.warehouse`, never by path.
"""
