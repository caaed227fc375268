"""Where a task stands, kept in Redis (Mailbox.save_checkpoint) after every finished step.

A worker that dies loses nothing: the next owner of the partition reads the checkpoint and
resumes at the first unfinished page, with the same page numbers (so the same stats batch keys)
and the same pacing schedule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Checkpoint:
    page: int = 0  # the next page to send (its stats batch key is page-<page>)
    cursor: str = ""  # TagAlias resolve cursor of that page ("" before the first)
    walked: bool = False  # every page is sent
    started: int = 0  # ms the first page went out (pacing runs from here); 0: not started
    estimate: int = 0  # targets the pacing spreads over the duration
    targets: int = 0  # targets sent so far
    done: bool = False  # the task is finished; a duplicate or retried task is skipped

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Checkpoint:
        """Parses Mailbox.checkpoint(); missing fields take their defaults."""

        def num(name: str) -> int:
            return int(fields.get(name) or 0)

        return cls(
            page=num("page"),
            cursor=fields.get("cursor", ""),
            walked=bool(num("walked")),
            started=num("started"),
            estimate=num("estimate"),
            targets=num("targets"),
            done=bool(num("done")),
        )

    def to_fields(self) -> dict[str, str | int]:
        return {k: int(v) if isinstance(v, bool) else v for k, v in asdict(self).items()}

    def after_page(self, cursor: str, count: int, last: bool) -> Checkpoint:
        """The checkpoint once a page of count targets is sent; cursor is where the next starts."""
        return replace(
            self, page=self.page + 1, cursor="" if last else cursor, walked=last, targets=self.targets + count
        )
