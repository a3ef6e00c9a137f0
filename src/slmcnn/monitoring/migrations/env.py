"""Alembic's entry point: run the migrations on the connection that migrations.upgrade hands over."""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
