"""Which packages the wheel holds; everything else about the project is in pyproject.toml.

The Aerich migration files stay in the top-level `migrations/`: SQLite's chain in `models/`, where Aerich's `location`
points, and PostgreSQL's in `postgres/models/`. The wheel ships that folder as the package `daycare_migrations` (the
chains' `*.py` as package data), so an installed daycare finds them; an editable install maps the package to the
checkout's folder. pyproject.toml cannot combine found packages with one package mapped to another folder, hence
this file.
"""

from setuptools import find_namespace_packages, setup

DAYCARE_PACKAGES = find_namespace_packages(include=["daycare", "daycare.*"], exclude=["*.__pycache__"])

setup(
    packages=[*DAYCARE_PACKAGES, "daycare_migrations"],
    package_dir={"daycare_migrations": "migrations"},
    package_data={"daycare_migrations": ["models/*.py", "postgres/models/*.py"]},
)
