"""The Aerich migration files of daycare: SQLite's chain in `models/` (Aerich's `location` is this folder) and
PostgreSQL's in `postgres/models/` (`aerich -c migrations/postgres/aerich.toml ...`).

Installed, this folder is the package `daycare_migrations` and both chains' `*.py` its data (see setup.py);
daycare.storage.migrations.loader reads the files from there. Keep each `models/` free of anything but
`<n>_<name>.py` migration files: Aerich lists every module in it.
"""
