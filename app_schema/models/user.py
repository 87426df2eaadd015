"""The service's user accounts (table ``user``)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class User(Model):
    """Someone who fills in checklists and rates work orders."""

    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=255, unique=True)
    full_name = fields.CharField(max_length=200)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    def __str__(self) -> str:
        return self.email


__models__ = [User]
