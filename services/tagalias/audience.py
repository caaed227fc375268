"""An audience as a set expression that one Redis script (lua/resolve_step.lua) evaluates inside
one bucket.

Per bucket the result is

    base ∩ every tagsAnd set ∩ (union of the platform sets) − union of the tagsNot sets

where base is (union of tags) ∩ (registrationIds ∪ devices of aliases), taking only the parts
that were given, or the bucket's ``all`` set when neither was given (all, or tagsAnd/tagsNot
alone). Registration ids and aliases together form one named set: the partner lists the devices
it means, by id or by alias. Even a query that is one stored set (one tag, all) is copied
into the bucket's sorted result first: the walk pages by lex range (walk.py says why).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from services.common.contract import PushGrid
from services.common.platforms import ALL as EVERY_PLATFORM


@dataclass(frozen=True)
class Query:
    """A validated audience plus platform filter, in canonical (sorted) order."""

    app: str
    tags: tuple[str, ...] = ()
    tags_and: tuple[str, ...] = ()
    tags_not: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    registration_ids: tuple[str, ...] = ()
    platforms: tuple[int, ...] = ()  # empty: every platform

    @property
    def explicit(self) -> bool:
        """True when the partner named devices (ids or aliases): those must be gathered first."""
        return bool(self.aliases or self.registration_ids)

    def digest(self) -> str:
        """A stable hex digest of the query: names its temporary keys and checks its cursors."""
        body = json.dumps(
            [self.app, self.tags, self.tags_and, self.tags_not, self.aliases, self.registration_ids, self.platforms],
            separators=(",", ":"),
        )
        return hashlib.sha1(body.encode("utf-8")).hexdigest()


def query(app: str, audience: PushGrid.Audience, platforms: list[PushGrid.Platform]) -> Query:
    """Builds the query of an audience already cleaned by validation.audience()."""
    values = tuple(sorted({p.value for p in platforms}))
    if values == tuple(p.value for p in EVERY_PLATFORM):
        values = ()  # every platform is no filter
    return Query(
        app=app,
        tags=tuple(sorted(audience.tags or ())),
        tags_and=tuple(sorted(audience.tagsAnd or ())),
        tags_not=tuple(sorted(audience.tagsNot or ())),
        aliases=tuple(sorted(audience.aliases or ())),
        registration_ids=tuple(sorted(audience.registrationIds or ())),
        platforms=values,
    )
