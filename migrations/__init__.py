"""The Aerich migration files of daycare, in `models/` (Aerich's `location` is this folder).

Installed, this folder is the package `daycare_migrations` and `models/*.py` its data (see setup.py);
daycare.storage.migrations.loader reads the files from there. Keep `models/` free of anything but
`<n>_<name>.py` migration files: Aerich lists every module in it.
"""
