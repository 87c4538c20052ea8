"""Grant or withdraw admin rights: ``python -m api.accounts.admin EMAIL [--demote]``.

Uses the configured database (``TRITONGATE_DATABASE_URL``, migrated first). The first admin has
to come from someone with server access: over HTTP only an admin (through a login session) can
promote or demote others (``PATCH /users/{user_id}``). Demoting deletes the user's admin-scope
API keys, so promoting them again later revives none.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from api.accounts.crud import users as users_crud
from api.config import Settings
from api.db import migrate
from api.db.engine import Database


async def set_admin(settings: Settings, email: str, is_admin: bool) -> bool:
    """``False`` when no user has this email."""
    database = Database.from_settings(settings)
    try:
        await migrate.upgrade(database.engine)
        async with database.sessions() as session:
            user = await users_crud.get_user_by_email(session, email)
            if user is None:
                return False
            await users_crud.set_admin(session, user, is_admin)
            return True
    finally:
        await database.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.accounts.admin", description=__doc__)
    parser.add_argument("email")
    parser.add_argument("--demote", action="store_true", help="withdraw admin rights")
    arguments = parser.parse_args(argv)
    settings = Settings()
    if not asyncio.run(set_admin(settings, arguments.email, not arguments.demote)):
        print(f"no user with email {arguments.email!r}", file=sys.stderr)
        return 1
    state = (
        "no longer an admin (admin-scope API keys deleted)" if arguments.demote else "now an admin"
    )
    print(f"{arguments.email} is {state} ({migrate.safe_url(settings.database_url)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
