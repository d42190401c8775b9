"""Which strategy merges which parameter: command line, git config, `.thetamerge.toml`.

Precedence: a strategy given on the command line, then git config
`theta.merge.strategy` (with `theta.merge.arg` k=v values), then the
committed policy file `.thetamerge.toml` at the repository root (first
matching rule, else its [default]). What none of them covers is asked on the
terminal, or the merge stops.
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from git_theta import git, plugins
from git_theta.errors import ThetaError
from git_theta.merge import aliases, settings
from git_theta.merge.strategies.base import MergeStrategy

POLICY_FILE = ".thetamerge.toml"
CONFIG_STRATEGY = "theta.merge.strategy"
CONFIG_ARG = "theta.merge.arg"
# Keys of a policy rule that are not strategy arguments.
RULE_KEYS = ("params", "path", "layers", "strategy")
# The policy file is committed by collaborators, so it is untrusted input: these bound the work it can ask for
# (every conflicting parameter is matched against every rule) and what a message can echo back.
MAX_POLICY_BYTES = 1 << 20
MAX_RULES = 256
MAX_TEXT_CHARS = 1024  # a pattern, a strategy name, a string argument
MAX_LIST_ITEMS = 64  # a list argument (e.g. one weight per merged branch)


@dataclass(frozen=True)
class Choice:
    """A strategy with validated arguments, and where the choice came from (for messages).

    `varying` holds the arguments whose value depends on the parameter or on the versions (gradients,
    per-model values); `at` gives the Choice for one parameter, with every argument a plain value.
    """

    strategy: str
    arguments: Mapping[str, Any]
    source: str
    varying: Mapping[str, settings.Setting] = field(default_factory=dict)

    def plugin(self) -> MergeStrategy:
        return plugins.strategy(self.strategy)()

    def at(self, name: str, context: settings.Context) -> Choice:
        """This choice for parameter `name`: gradients evaluated at its layer, per-model values as tuples."""
        declared = plugins.strategy(self.strategy).arguments
        if not self.varying and not any(settings.per_model(a) for a in declared):
            return self
        arguments = dict(self.arguments)
        for argument in declared:
            if argument.name in self.varying:
                where = f"{self.source}: argument {argument.name}"
                setting = self.varying[argument.name]
                arguments[argument.name] = settings.evaluate(argument, setting, name, context, where)
            elif settings.per_model(argument) and isinstance(arguments.get(argument.name), (int, float)):
                arguments[argument.name] = (arguments[argument.name],) * len(context.labels)
        return Choice(self.strategy, arguments, self.source)

    def label(self) -> str:
        args = " ".join(f"{k}={_show(v)}" for k, v in self.arguments.items() if v is not None)
        return f"{self.strategy} {args}".strip()


def _show(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def make_choice(strategy: str, arguments: Mapping[str, Any], source: str) -> Choice:
    """Look the strategy up and validate its arguments; errors name `source`."""
    _check_text(strategy, "strategy", source)
    try:
        plugin = plugins.strategy(strategy)
    except ThetaError as error:
        raise ThetaError(f"{source}: {error}") from None
    declared = {argument.name: argument for argument in plugin.arguments}
    fixed: dict[str, Any] = {}
    varying: dict[str, settings.Setting] = {}
    for name, value in aliases.resolve(plugin, arguments, source).items():
        argument = declared.get(name)
        if argument is not None and isinstance(value, settings.SETTINGS):  # built already (a mergekit recipe)
            settings.check(argument, value, strategy, f"{source}: argument {name}")
            varying[name] = value
        elif argument is not None and settings.varies(argument, value):
            varying[name] = settings.parse_setting(argument, value, strategy, f"{source}: argument {name}")
        else:
            _check_argument(name, value, source)
            fixed[name] = value
    try:
        parsed = plugin.parse_arguments(fixed)
    except ThetaError as error:
        raise ThetaError(f"{source}: {error}") from None
    for name, value in parsed.items():
        # "nan" or "1e999" given as text parses to a float no range check catches (NaN compares false).
        if any(
            isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))
        ):
            raise ThetaError(f"{source}: argument {name}={_show(value)} is not a finite number")
    return Choice(strategy, parsed, source, varying)


def _check_text(value: str, what: str, source: str) -> None:
    if len(value) > MAX_TEXT_CHARS:
        raise ThetaError(f"{source}: {what} of {len(value)} characters is longer than the {MAX_TEXT_CHARS} allowed")


def _check_argument(name: str, value: Any, source: str) -> None:
    """A strategy argument is a string, a finite number or a flat, short list of them (TOML can say far more)."""
    _check_text(name, "argument name", source)
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_LIST_ITEMS:
        raise ThetaError(f"{source}: argument {name} lists {len(items)} values, more than the {MAX_LIST_ITEMS} allowed")
    for item in items:
        if isinstance(item, str):
            _check_text(item, f"argument {name}", source)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ThetaError(f"{source}: argument {name}={item} is not a finite number")
        elif not isinstance(item, (int, float)):
            raise ThetaError(
                f"{source}: argument {name} must be a number, a string or a list of them, not a {type(item).__name__}"
            )


def parse_assignments(items: Sequence[str], source: str) -> dict[str, str]:
    """{"k": "0.1"} from ["k=0.1"]."""
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ThetaError(f"{source}: expected NAME=VALUE, got {item!r}")
        found[key.strip()] = value.strip()
    return found


@dataclass(frozen=True)
class Rule:
    params: str
    path: str | None
    choice: Choice
    layers: tuple[int, int] | None = None  # first and last layer index matched, both included

    def matches(self, path: str, name: str) -> bool:
        if not fnmatch.fnmatchcase(name, self.params):
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        if self.layers is None:
            return True
        index = settings.layer_index(name)
        return index is not None and self.layers[0] <= index <= self.layers[1]


@dataclass
class Policy:
    """The rules of a policy file, first match wins, then the default."""

    rules: list[Rule] = field(default_factory=list)
    default: Choice | None = None

    def choose(self, path: str, name: str) -> Choice | None:
        for rule in self.rules:
            if rule.matches(path, name):
                return rule.choice
        return self.default


def _table_choice(table: Any, where: str) -> Choice:
    if not isinstance(table, dict) or not isinstance(table.get("strategy"), str):
        raise ThetaError(f'{where}: needs strategy = "NAME"')
    arguments = {k: v for k, v in table.items() if k not in RULE_KEYS}
    return make_choice(table["strategy"], arguments, where)


def parse_policy(text: str, source: str = POLICY_FILE) -> Policy:
    """Parse the policy file's TOML; every error names the file and the table."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ThetaError(f"{source}: not valid TOML: {error}") from None
    except ValueError:  # Python refuses to convert an integer of more than 4300 digits
        raise ThetaError(f"{source}: an integer with more digits than a policy file may have") from None
    except RecursionError:
        raise ThetaError(f"{source}: arrays or tables nested too deeply for a policy file") from None
    unknown = sorted(set(doc) - {"default", "rule"})
    if unknown:
        raise ThetaError(f"{source}: unknown table {unknown[0]!r}; expected [default] and [[rule]]")
    policy = Policy()
    if "default" in doc:
        policy.default = _table_choice(doc["default"], f"{source} [default]")
    rules = doc.get("rule", [])
    if not isinstance(rules, list):
        raise ThetaError(f"{source}: `rule` must be an array of tables ([[rule]])")
    if len(rules) > MAX_RULES:
        raise ThetaError(
            f"{source}: {len(rules)} [[rule]] tables, more than the {MAX_RULES} allowed (use wider patterns)"
        )
    for index, table in enumerate(rules, start=1):
        where = f"{source} [[rule]] #{index}"
        if not isinstance(table, dict) or not isinstance(table.get("params"), str):
            raise ThetaError(f'{where}: needs params = "PATTERN" (an fnmatch pattern of parameter names)')
        path = table.get("path")
        if path is not None and not isinstance(path, str):
            raise ThetaError(f"{where}: path must be a string pattern")
        _check_text(table["params"], "params pattern", where)
        _check_text(path or "", "path pattern", where)
        layers = settings.parse_layers(table["layers"], where) if "layers" in table else None
        policy.rules.append(Rule(table["params"], path, _table_choice(table, where), layers))
    return policy


def load_policy(toplevel: Path) -> Policy | None:
    """The policy file at the repository root, or None if there is none."""
    path = toplevel / POLICY_FILE
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_POLICY_BYTES + 1)  # never more, whatever it is (a symlink to a huge file)
    except OSError as error:
        raise ThetaError(f"{path}: cannot read: {error.strerror}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise ThetaError(f"{path}: larger than the {MAX_POLICY_BYTES} bytes a policy file may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ThetaError(f"{path}: not UTF-8 text (byte {error.start})") from None
    return parse_policy(text, str(path))


def config_choice(cwd: Path | str | None = None) -> Choice | None:
    """The strategy set with `git config theta.merge.strategy` (and `theta.merge.arg`), if any."""
    strategy = git.config_get(CONFIG_STRATEGY, cwd=cwd)
    if not strategy:
        return None
    result = git.run("config", "--get-all", CONFIG_ARG, cwd=cwd, check=False)
    items = result.stdout.decode().split("\n") if result.returncode == 0 else []
    source = f"git config {CONFIG_STRATEGY}={strategy}"
    return make_choice(strategy, parse_assignments([i for i in items if i.strip()], source), source)
