"""Fixtures of the leaderboard tests."""

from __future__ import annotations

import pytest
from mbtest.leaderboard import PG_DEFAULT_URL, PG_ENV_VAR, pg_admin_url


@pytest.fixture
def pg_url():
    """A throwaway PostgreSQL database on the server tools/ci/install_postgres.sh starts;
    dropped afterwards. Fails (never skips) when the server cannot be reached."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from mixbench.leaderboard import normalize_db_url

    admin = normalize_db_url(pg_admin_url())
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        error = None
    except Exception as e:  # noqa: BLE001 - turned into an actionable failure below
        error = str(e).splitlines()[0]
    if error:
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(admin)!r} ({error}).\n"
            f"Start it with: sudo bash tools/ci/install_postgres.sh  (it prints the "
            f"URL; export {PG_ENV_VAR}=<that URL> if it differs from the default "
            f"{PG_DEFAULT_URL})",
            pytrace=False,
        )
    name = f"mixbench_test_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
