"""A structural Dockerfile reader for the lint tests: stages, their instructions, and what a
stage inherits from the stage it is built FROM (USER, HEALTHCHECK, CMD, ENV, RUN lines)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Stage:
    name: str | None
    base: str  # resolved image reference or the name of an earlier stage
    instructions: list[tuple[str, str]] = field(default_factory=list)
    parent: Stage | None = None  # the earlier stage this one is FROM, if any

    def chain(self) -> list[Stage]:
        """This stage and its ancestors, nearest first."""
        out, s = [], self
        while s is not None:
            out.append(s)
            s = s.parent
        return out

    def own(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def inherited(self, keyword: str) -> list[str]:
        """All arguments of `keyword` in this stage and its ancestors, oldest first."""
        return [a for s in reversed(self.chain()) for a in s.own(keyword)]

    def last(self, keyword: str) -> str | None:
        values = self.inherited(keyword)
        return values[-1] if values else None

    def env(self) -> dict[str, str]:
        """ENV key=value pairs in effect (inherited, later wins)."""
        out: dict[str, str] = {}
        for args in self.inherited("ENV"):
            for token in shlex.split(args):
                if "=" in token:
                    key, value = token.split("=", 1)
                    out[key] = value
        return out

    @property
    def external_base(self) -> str:
        """The image this stage ultimately starts from."""
        return self.chain()[-1].base


def logical_lines(text: str) -> list[str]:
    """Join continuation lines, drop comments and blank lines (as Docker's parser does)."""
    lines, buf = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comments (and parser directives) - also inside continuations
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    if buf.strip():
        lines.append(buf.strip())
    return lines


def substitute(value: str, args: dict[str, str]) -> str:
    return _VAR.sub(lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def parse(text: str) -> dict[str | None, Stage]:
    """Stages by name (unnamed stages under their index as a string)."""
    global_args: dict[str, str] = {}
    stages: dict[str | None, Stage] = {}
    current: Stage | None = None
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            base = substitute(parts[0], global_args)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            current = Stage(name=name, base=base, parent=stages.get(base))
            stages[name] = current
        elif current is None:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            current.instructions.append((keyword, rest))
    return stages
