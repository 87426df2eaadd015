"""The checklist domain: checklists, their questions and the responses filled in for them.

Table names are Tortoise's defaults (lowercased class names); the deploy relies on
``checklistresponse.answers`` for its GIN index, which is deliberately not declared here.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Unit(Model):
    """A unit of measure that numeric answers are given in, e.g. bar or degrees Celsius."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=50, unique=True)
    symbol = fields.CharField(max_length=20)

    def __str__(self) -> str:
        return self.symbol


class AnswerType(Model):
    """How a question is answered: boolean, number, text, or a choice from a list."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=30, unique=True)
    name = fields.CharField(max_length=100)
    description = fields.TextField(null=True)

    def __str__(self) -> str:
        return self.code


class Checklist(Model):
    """A named, versioned list of questions to go through on a work order."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    description = fields.TextField(null=True)
    version = fields.IntField(default=1)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        unique_together = (("name", "version"),)

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Question(Model):
    """One question of a checklist, at a fixed position."""

    id = fields.IntField(primary_key=True)
    # A question has no meaning outside its checklist.
    checklist: fields.ForeignKeyRelation[Checklist] = fields.ForeignKeyField(
        "models.Checklist", related_name="questions", on_delete=fields.OnDelete.CASCADE
    )
    order = fields.IntField()
    text = fields.TextField()
    help_text = fields.TextField(null=True)
    # Answer types are reference data: removing one that questions use must fail loudly.
    answer_type: fields.ForeignKeyRelation[AnswerType] = fields.ForeignKeyField(
        "models.AnswerType", related_name="questions", on_delete=fields.OnDelete.RESTRICT
    )
    # A retired unit leaves the question valid, only without a unit label.
    unit: fields.ForeignKeyNullableRelation[Unit] = fields.ForeignKeyField(
        "models.Unit", related_name="questions", null=True, on_delete=fields.OnDelete.SET_NULL
    )
    is_required = fields.BooleanField(default=True)

    class Meta:
        unique_together = (("checklist", "order"),)

    def __str__(self) -> str:
        return self.text


class ListOption(Model):
    """One choice of a list question."""

    id = fields.IntField(primary_key=True)
    question: fields.ForeignKeyRelation[Question] = fields.ForeignKeyField(
        "models.Question", related_name="options", on_delete=fields.OnDelete.CASCADE
    )
    value = fields.CharField(max_length=100)
    label = fields.CharField(max_length=200)
    order = fields.IntField(default=0)

    class Meta:
        unique_together = (("question", "value"),)

    def __str__(self) -> str:
        return self.label


class QuestionDependency(Model):
    """Show the question only when depends_on was answered with expected_value."""

    id = fields.IntField(primary_key=True)
    question: fields.ForeignKeyRelation[Question] = fields.ForeignKeyField(
        "models.Question", related_name="dependencies", on_delete=fields.OnDelete.CASCADE
    )
    # CASCADE, not RESTRICT: deleting a checklist cascades to all its questions at once, and a
    # RESTRICT here would make that delete fail on the checklist's own dependencies.
    depends_on: fields.ForeignKeyRelation[Question] = fields.ForeignKeyField(
        "models.Question", related_name="dependents", on_delete=fields.OnDelete.CASCADE
    )
    expected_value = fields.CharField(max_length=255)

    class Meta:
        unique_together = (("question", "depends_on", "expected_value"),)

    def __str__(self) -> str:
        return f"{self.question_id} if {self.depends_on_id} == {self.expected_value}"


class ChecklistResponse(Model):
    """A checklist filled in by a user for a work order; answers are keyed by question id."""

    id = fields.IntField(primary_key=True)
    # Filled-in checklists are records: a checklist that has responses cannot be deleted.
    checklist: fields.ForeignKeyRelation[Checklist] = fields.ForeignKeyField(
        "models.Checklist", related_name="responses", on_delete=fields.OnDelete.RESTRICT
    )
    # The record survives the account that filled it in.
    user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name="responses", null=True, on_delete=fields.OnDelete.SET_NULL
    )
    work_order_id = fields.CharField(max_length=64, null=True, db_index=True)
    answers: fields.JSONField[dict] = fields.JSONField(default=dict)
    submitted_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    def __str__(self) -> str:
        return f"response {self.pk} to checklist {self.checklist_id}"


__models__ = [
    Unit,
    AnswerType,
    Checklist,
    Question,
    ListOption,
    QuestionDependency,
    ChecklistResponse,
]
