"""Reading the deployment files the way their tools do, for tests/unit/test_deploy_*.py:
Dockerfile instructions and stages, ``.dockerignore`` matching, YAML documents, nginx
configurations (parsed by crossplane, nginx's grammar and directive contexts), nginx sizes and
times, and the names of the app's settings."""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from api.config import Settings
from serving.settings import ENV_PREFIX

SETTING_NAME = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9_]+\b")


def get_routes(work_dir: Path) -> set[str]:
    """The paths ``create_app`` answers with GET (from its route table, as OpenAPI lists it)."""
    from api.main import create_app

    app = create_app(Settings(_env_file=None, work_dir=work_dir))  # type: ignore[call-arg]
    paths = app.openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


def setting_names() -> set[str]:
    """Every ``TRITONGATE_*`` variable the app reads."""
    return {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    def flags(self) -> dict[str, str]:
        """``--name=value`` options at the start of the arguments (COPY --from=..., ...)."""
        found = {}
        for word in self.arguments.split():
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            found[name] = value
        return found

    def words(self) -> list[str]:
        """The arguments without the leading options, in exec (JSON) or shell form."""
        text = self.arguments
        if text.lstrip().startswith("["):
            return list(yaml.safe_load(text))
        return [word for word in shlex.split(text) if not word.startswith("--")]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.arguments):
                name, _, value = word.partition("=")
                values[name] = value
        return values


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]

    def stage(self, name: str) -> Stage:
        return self.stages[name]

    def resolve(self, text: str) -> str:
        """``${ARG}`` references to the global build arguments replaced by their defaults."""
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args[m.group(1) or m.group(2)], text)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with their continuation lines joined (comments inside them dropped)."""
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        lines.append((start, " ".join(part for part in current if part)))
        current = []
    return lines


def parse_dockerfile(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for number, line in _logical_lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stage = Stage(name, base)
            stages[name] = stage
        elif stage is None:
            if instruction.keyword == "ARG":
                name, _, default = instruction.arguments.partition("=")
                args[name] = default
        else:
            stage.instructions.append(instruction)
    return Dockerfile(args, stages)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context: the last
    pattern matching the path or one of its parent directories decides; ``!`` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        pattern = pattern.rstrip("/")
        if any(_match(pattern, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def _match(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        rest = pattern[3:]
        segments = path.split("/")
        return any(_match(rest, "/".join(segments[index:])) for index in range(len(segments)))
    if pattern.count("/") != path.count("/"):
        return False
    return all(
        fnmatch.fnmatchcase(part, want)
        for part, want in zip(path.split("/"), pattern.split("/"), strict=True)
    )


def dockerignore_patterns(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@dataclass(frozen=True)
class NginxDirective:
    """One nginx directive: its name, its arguments (quotes removed) and its block, if any."""

    name: str
    args: tuple[str, ...]
    block: tuple[NginxDirective, ...] | None = None

    def all(self, name: str) -> list[NginxDirective]:
        return [child for child in self.block or () if child.name == name]

    def one(self, name: str) -> NginxDirective:
        (found,) = self.all(name)
        return found

    def get(self, name: str) -> NginxDirective | None:
        found = self.all(name)
        assert len(found) <= 1, f"{name} is set {len(found)} times"
        return found[0] if found else None

    def child(self, name: str, *args: str) -> NginxDirective:
        """The block directive ``name args { ... }`` (``location = /token``, ``upstream x``)."""
        (found,) = [child for child in self.all(name) if child.args == args]
        return found


def parse_nginx(path: Path) -> NginxDirective:
    """The main context of an nginx configuration file (includes not followed); fails on what
    crossplane finds wrong: syntax, a directive outside its context, a wrong argument count."""
    import crossplane

    payload = crossplane.parse(str(path), single=True, catch_errors=False)
    (config,) = payload["config"]
    assert payload["errors"] == [] and config["errors"] == [], payload

    def convert(items: list[dict[str, Any]]) -> tuple[NginxDirective, ...]:
        return tuple(
            NginxDirective(
                item["directive"],
                tuple(item["args"]),
                convert(item["block"]) if "block" in item else None,
            )
            for item in items
        )

    return NginxDirective("main", (), convert(config["parsed"]))


_NGINX_SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_NGINX_TIMES = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def nginx_bytes(value: str) -> int:
    """An nginx size (``1k``, ``10256k``, ``8m``) in bytes."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert match, value
    return int(match[1]) * _NGINX_SIZES[match[2].lower()]


def nginx_seconds(value: str) -> float:
    """An nginx time (``10s``, ``75``, ``500ms``, ``1m``) in seconds."""
    match = re.fullmatch(r"(\d+)(ms|[smhd]?)", value)
    assert match, value
    return int(match[1]) * _NGINX_TIMES[match[2]]
