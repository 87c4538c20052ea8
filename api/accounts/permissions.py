"""The one ownership rule: only a resource's author, or an admin, may change or delete it.

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the
annotations of the dependency built by :func:`owned` at run time, and they refer to the
``loader`` argument, which string annotations could not resolve.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends

from api.accounts.auth import CurrentPrincipal, Principal
from api.errors import PermissionDeniedError


class Authored(Protocol):
    @property
    def author_id(self) -> int: ...


R = TypeVar("R", bound=Authored)


def ensure_can_modify(principal: Principal, resource: Authored) -> None:
    if not (principal.is_admin or resource.author_id == principal.user.id):
        raise PermissionDeniedError("Only the author or an admin may change or delete this")


def owned(loader: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """A dependency giving what ``loader`` loads, once the caller may modify it.

    The user is resolved first, so an anonymous request gets 401 before any 404 or 403.
    """

    async def dependency(principal: CurrentPrincipal, resource: Annotated[R, Depends(loader)]) -> R:
        ensure_can_modify(principal, resource)
        return resource

    return dependency
