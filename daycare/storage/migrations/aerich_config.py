"""`TORTOISE_ORM` for the Aerich CLI: the same database lookup and backend as `daycare`.

`aerich upgrade` then runs the same migration files on the same file, through the backend
that keeps every file atomic.
"""

from __future__ import annotations

from daycare.config import config_load
from daycare.storage.db.database import database_config
from daycare.storage.db.location import database_location

TORTOISE_ORM = database_config(database_location(config_load().db_location), aerich=True)
