"""Named invariant errors of the contact aggregate; each carries a contract reason."""

from __future__ import annotations


class LifecycleRejection(Exception):
    """A command that is well formed but breaks a lifecycle rule (outcome ``rejected``)."""

    reason: str = "rejected"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)


class AlreadyOpen(LifecycleRejection):
    reason = "already_open"


class NoOpenConversation(LifecycleRejection):
    reason = "no_open_conversation"


class WelcomeNotSupported(LifecycleRejection):
    reason = "welcome_not_supported"


class AlreadyMerged(LifecycleRejection):
    reason = "already_merged"


class InvalidMerge(LifecycleRejection):
    reason = "invalid_merge"


REJECTION_REASONS: tuple[str, ...] = tuple(
    cls.reason
    for cls in (AlreadyOpen, NoOpenConversation, WelcomeNotSupported, AlreadyMerged, InvalidMerge)
)
