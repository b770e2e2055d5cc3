"""Who an operation acts for: a user, and optionally one of that user's agents, with the legacy rules for both ids."""

from __future__ import annotations

from dataclasses import dataclass, field


def _id_required(value: str, name: str) -> str:
    normalized = value.strip()
    if not normalized:
        raise ValueError(f"{name} is required.")
    return normalized


@dataclass(frozen=True, slots=True, init=False)
class Context:
    """A user id and an optional agent id, both trimmed and non-empty.

    Reading `agent_id` on a user-only context raises, as the legacy Context did, so code that
    needs an agent cannot silently act for "no agent".
    """

    user_id: str
    _agent_id: str | None = field(repr=False)

    def __init__(self, user_id: str, agent_id: str | None = None) -> None:
        object.__setattr__(self, "user_id", _id_required(user_id, "Context userId"))
        object.__setattr__(self, "_agent_id", None if agent_id is None else _id_required(agent_id, "Context agentId"))

    @property
    def agent_id(self) -> str:
        """The agent id; raises ValueError("Context has no agentId") on a user-only context."""
        if self._agent_id is None:
            raise ValueError("Context has no agentId")
        return self._agent_id

    @property
    def has_agent_id(self) -> bool:
        return self._agent_id is not None

    def __repr__(self) -> str:
        return f"Context(user_id={self.user_id!r}, agent_id={self._agent_id!r})"


def context_for_user(user_id: str) -> Context:
    """A user-scoped context without an agent."""
    return Context(user_id)


def context_for_agent(user_id: str, agent_id: str) -> Context:
    """A context for one agent of a user."""
    return Context(user_id, agent_id)
