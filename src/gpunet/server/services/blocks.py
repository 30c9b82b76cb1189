"""Operator blocks on an address, a network range or a principal.

Each block is one row naming exactly what it covers; lifting it is another audited
change. There is deliberately no "block everything" switch: the fix for an attack
must not cut off honest suppliers wholesale (T6).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpunet.core.errors import Blocked, Conflict, InvalidInput, NotFound
from gpunet.server.db.tables import Block
from gpunet.server.security.principal import Principal
from gpunet.server.services import audit

# A network block wider than this would cover whole providers' ranges of honest users.
MIN_PREFIX_V4 = 16
MIN_PREFIX_V6 = 32


class BlockKind(enum.StrEnum):
    ADDRESS = "address"
    NETWORK = "network"
    PRINCIPAL = "principal"


def normalise(kind: BlockKind, value: str) -> str:
    try:
        if kind is BlockKind.ADDRESS:
            return str(ipaddress.ip_address(value))
        if kind is BlockKind.NETWORK:
            net = ipaddress.ip_network(value, strict=False)
            floor = MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6
            if net.prefixlen < floor:
                raise InvalidInput(
                    f"refusing to block {net}: wider than /{floor} would cut off honest "
                    "suppliers wholesale; block narrower ranges"
                )
            return str(net)
    except ValueError as exc:
        raise InvalidInput(f"not a valid {kind.value}: {value!r}") from exc
    kind_part, _, ident = value.partition(":")
    if kind_part not in ("owner", "device") or not ident or len(value) > 128:
        raise InvalidInput("a principal is written owner:<id> or device:<public id>")
    return value


def active(session: Session) -> Sequence[Block]:
    return session.execute(select(Block).where(Block.lifted_at.is_(None))).scalars().all()


def add(
    session: Session,
    *,
    kind: BlockKind,
    value: str,
    reason: str,
    actor: Principal,
    now: dt.datetime,
) -> Block:
    value = normalise(kind, value)
    if not reason.strip():
        raise InvalidInput("a block needs a reason")
    for block in active(session):
        if block.kind == kind.value and block.value == value:
            raise Conflict(f"{kind.value} {value} is already blocked (block {block.id})")
    block = Block(
        kind=kind.value,
        value=value,
        reason=reason.strip()[:255],
        created_at=now,
        created_by=actor.key,
    )
    session.add(block)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="block.add",
        entity_kind="block",
        entity_id=str(block.id),
        before=None,
        after={"kind": kind.value, "value": value, "reason": block.reason},
        now=now,
    )
    return block


def lift(session: Session, *, block_id: int, actor: Principal, now: dt.datetime) -> Block:
    block = session.get(Block, block_id, with_for_update=True)
    if block is None or block.lifted_at is not None:
        raise NotFound(f"no active block {block_id}")
    block.lifted_at = now
    block.lifted_by = actor.key
    audit.append(
        session,
        actor=actor,
        action="block.lift",
        entity_kind="block",
        entity_id=str(block.id),
        before={"active": True},
        after={"active": False},
        now=now,
    )
    return block


def check(blocks: Sequence[Block], *, address: str | None, principal_key: str | None) -> None:
    """Raise Blocked if the caller's address, network or principal is blocked."""
    ip = None
    if address:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
    for block in blocks:
        if block.kind == BlockKind.PRINCIPAL and principal_key == block.value:
            raise Blocked("this principal is blocked by the operator")
        if ip is None:
            continue
        if block.kind == BlockKind.ADDRESS and str(ip) == block.value:
            raise Blocked("this address is blocked by the operator")
        if block.kind == BlockKind.NETWORK and ip in ipaddress.ip_network(block.value):
            raise Blocked("this network is blocked by the operator")
