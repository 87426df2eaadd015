"""Ratings of finished work orders (table ``workorder_rating``)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model
from tortoise.validators import MaxValueValidator, MinValueValidator


class WorkOrderRating(Model):
    """A user's 1..5 score of one work order, with an optional comment.

    Work orders live in another system, so they are referenced by their external id rather
    than by a foreign key.
    """

    id = fields.IntField(primary_key=True)
    work_order_id = fields.CharField(max_length=64, db_index=True)
    # Ratings outlive the account that gave them: they feed the work order's statistics.
    user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User",
        related_name="ratings",
        null=True,
        on_delete=fields.OnDelete.SET_NULL,
    )
    rating = fields.SmallIntField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    comment = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "workorder_rating"
        unique_together = (("work_order_id", "user"),)

    def __str__(self) -> str:
        return f"{self.work_order_id}: {self.rating}"


__models__ = [WorkOrderRating]
