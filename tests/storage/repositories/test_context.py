"""Context: trimmed, required user and agent ids, as the legacy Context had them."""

from __future__ import annotations

import dataclasses

import pytest

from daycare.storage.repositories.context import Context, context_for_agent, context_for_user


def test_trims_ids_and_keeps_the_agent() -> None:
    ctx = context_for_agent("  user-1 ", " agent-1  ")
    assert ctx.user_id == "user-1"
    assert ctx.agent_id == "agent-1"
    assert ctx.has_agent_id
    assert ctx == Context("user-1", "agent-1")


def test_reading_the_agent_of_a_user_only_context_raises() -> None:
    ctx = context_for_user("user-1")
    assert not ctx.has_agent_id
    with pytest.raises(ValueError, match=r"^Context has no agentId$"):
        _ = ctx.agent_id


@pytest.mark.parametrize(
    ("user_id", "agent_id", "message"), [(" ", None, "Context userId"), ("u", "  ", "Context agentId")]
)
def test_blank_ids_are_refused(user_id: str, agent_id: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{message} is required.$"):
        Context(user_id, agent_id)


def test_is_frozen() -> None:
    ctx = Context("user-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.user_id = "other"  # type: ignore[misc]
