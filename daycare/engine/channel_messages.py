"""Channel messages as agents receive them: the signal payload and its text form (legacy
`channelMessageBuild` and `channelSignalDataParse`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# How many earlier messages the text form quotes.
RECENT_LINES = 5


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A message as channels return it: by channel name, mentions as usernames."""

    id: str
    channel_name: str
    sender_username: str
    text: str
    mentions: tuple[str, ...]
    created_at: int

    def to_json(self) -> dict[str, Any]:
        """The legacy ChannelMessage object, keys in its order."""
        return {
            "id": self.id,
            "channelName": self.channel_name,
            "senderUsername": self.sender_username,
            "text": self.text,
            "mentions": list(self.mentions),
            "createdAt": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ChannelSignalData:
    """The `data` of a `channel.<name>:message` signal: the message and the channel's recent history."""

    channel_name: str
    message_id: str
    sender_username: str
    text: str
    mentions: tuple[str, ...]
    created_at: int
    history: tuple[ChannelMessage, ...]

    def to_json(self) -> dict[str, Any]:
        """The legacy ChannelSignalData object, keys in its order."""
        return {
            "channelName": self.channel_name,
            "messageId": self.message_id,
            "senderUsername": self.sender_username,
            "text": self.text,
            "mentions": list(self.mentions),
            "createdAt": self.created_at,
            "history": [entry.to_json() for entry in self.history],
        }


def channel_signal_data_build(message: ChannelMessage, history: Sequence[ChannelMessage]) -> ChannelSignalData:
    return ChannelSignalData(
        message.channel_name,
        message.id,
        message.sender_username,
        message.text,
        message.mentions,
        message.created_at,
        tuple(history),
    )


def channel_message_build(data: ChannelSignalData) -> str:
    """The text an agent reads: the message, its mentions, and up to five earlier messages."""
    mentions = ", ".join(f"@{mention}" for mention in data.mentions) if data.mentions else "none"
    lines = [f"[Channel: #{data.channel_name}] @{data.sender_username}: {data.text}", f"mentions: {mentions}"]
    recent = [entry for entry in data.history if entry.id != data.message_id][-RECENT_LINES:]
    if recent:
        lines.append("recent:")
        lines.extend(f"- @{entry.sender_username}: {entry.text}" for entry in recent)
    return "\n".join(lines)


def _field(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _strings(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return tuple(value)


def _history_entry_parse(entry: Any) -> ChannelMessage | None:
    if not isinstance(entry, dict):
        return None
    mentions = _strings(entry.get("mentions"))
    id, channel_name, sender, text = (_field(entry, key) for key in ("id", "channelName", "senderUsername", "text"))
    created_at = _field(entry, "createdAt")
    if (
        mentions is None
        or not all(isinstance(value, str) for value in (id, channel_name, sender, text))
        or not _is_number(created_at)
    ):
        return None
    return ChannelMessage(id, channel_name, sender, text, mentions, created_at)


def channel_signal_data_parse(data: Any) -> ChannelSignalData | None:
    """The payload of a channel signal; None when it does not have that shape."""
    if not isinstance(data, dict):
        return None
    channel_name, message_id, sender, text = (
        _field(data, key) for key in ("channelName", "messageId", "senderUsername", "text")
    )
    created_at = _field(data, "createdAt")
    mentions = _strings(data.get("mentions"))
    history_raw = data.get("history")
    if (
        not all(isinstance(value, str) for value in (channel_name, message_id, sender, text))
        or not _is_number(created_at)
        or mentions is None
        or not isinstance(history_raw, list)
    ):
        return None
    history: list[ChannelMessage] = []
    for raw in history_raw:
        entry = _history_entry_parse(raw)
        if entry is None:
            return None
        history.append(entry)
    return ChannelSignalData(channel_name, message_id, sender, text, mentions, created_at, tuple(history))
