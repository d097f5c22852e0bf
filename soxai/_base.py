"""The base of every config section: frozen, and unknown keys are errors."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen config section that rejects unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")
