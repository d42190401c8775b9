"""Read a mergekit YAML recipe (`git theta merge --mergekit-config FILE`) as revisions, a base and a Choice.

Only the per-tensor part of mergekit's configuration (mergekit/config.py,
MergeConfiguration) is accepted: merge_method, base_model, models (each with
parameters), parameters and dtype. Models are git revisions (or REV:PATH).
Everything else mergekit knows (slices, modules, tokenizer settings, chat
templates, out_dtype, other methods, parameters we do not implement) is
refused by name: a recipe never runs with a part of it silently dropped.

Parameter values keep mergekit's forms: a number, a gradient (a list of
numbers interpolated along the layers) or a list of {filter, value}
conditions (the first whose filter is a substring of the parameter name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from git_theta import dtypes, plugins
from git_theta.errors import ThetaError
from git_theta.merge import settings
from git_theta.merge.policy import Choice, make_choice

MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 16  # YAML nesting: a recipe is four levels deep
MAX_MODELS = 64
MAX_TEXT_CHARS = 1024

# mergekit method -> git-theta strategy. Names whose strategy is not installed fail as unknown strategies.
METHODS = {
    "linear": "weighted",
    "slerp": "slerp",
    "nuslerp": "nuslerp",
    "multislerp": "multislerp",
    "karcher": "karcher",
    "task_arithmetic": "task-arithmetic",
    "ties": "ties",
    "dare_linear": "dare",
    "dare_ties": "dare-ties",
    "della": "della",
    "della_linear": "della-linear",
    "breadcrumbs": "breadcrumbs",
    "breadcrumbs_ties": "breadcrumbs-ties",
    "sce": "sce",
    "model_stock": "model-stock",
    "nearswap": "nearswap",
}
# How each method uses base_model: "required" (task vectors from it; it is not one of the merged versions),
# "first" (one end of an interpolation between it and exactly one other model), "optional", "none".
BASES = {
    "linear": "none",
    "karcher": "none",
    "slerp": "first",
    "nearswap": "first",
    "nuslerp": "optional",
    "multislerp": "optional",
}
TOP_LEVEL = ("merge_method", "base_model", "models", "parameters", "dtype")
REFUSED_KEYS = {
    "slices": (
        "only one slice over the whole model is (mergekit's `models:` form); layer slicing is not a per-tensor merge"
    ),
    "modules": "per-module configurations are not supported",
    "tokenizer_source": "git-theta merges tensors, not tokenizers",
    "tokenizer": "git-theta merges tensors, not tokenizers",
    "chat_template": "git-theta merges tensors, not chat templates",
    "out_dtype": "each parameter keeps its dtype",
}
# mergekit's defaults for its normalize/rescale flags; only the default matches our definitions.
FLAG_DEFAULTS = {
    "normalize": {"linear": True, "ties": True, "della": True, "task_arithmetic": False, "dare_linear": False},
    "rescale": {"dare_linear": True, "dare_ties": True, "della": True, "della_linear": True},
}
# mergekit dtype names -> git-theta's.
DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64", "float": "F32", "half": "F16"}


@dataclass(frozen=True)
class Recipe:
    revisions: list[str]  # the merged versions, in order (ours first)
    base: str | None
    choice: Choice
    dtype: str | None  # git-theta dtype every floating parameter must have, when the recipe names one
    layer_range: tuple[int, int] | None = None  # from a one-slice recipe: must be the whole model, [0, L)


def _refuse_aliases_and_depth(text: str, where: str) -> None:
    """YAML aliases can make a small file expand without bound (billion laughs): a recipe never needs them."""
    import yaml  # type: ignore[import-untyped]

    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ThetaError(f"{where}: YAML aliases (*name) are not accepted in a merge recipe")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ThetaError(f"{where}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as error:
        raise ThetaError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None


def read(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise ThetaError("--mergekit-config needs PyYAML: pip install 'git-theta[mergekit]'") from None
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ThetaError(f"{path}: cannot read: {error.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ThetaError(f"{path}: larger than the {MAX_CONFIG_BYTES} bytes a merge recipe may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ThetaError(f"{path}: not UTF-8 text (byte {error.start})") from None
    _refuse_aliases_and_depth(text, str(path))
    return yaml.safe_load(text)


def load(path: Path) -> Recipe:
    return parse(read(path), str(path))


def _text(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_CHARS:
        raise ThetaError(f"{where}: {what} must be a non-empty string of at most {MAX_TEXT_CHARS} characters")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ThetaError(f"{where}: {value!r} is not a finite number")
    return float(value)


def _value(value: Any, where: str) -> settings.Value:
    """A number, a gradient, or {filter, value} conditions (mergekit's ParameterSetting)."""
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        if len(value) > settings.MAX_VALUES:
            raise ThetaError(f"{where}: more than {settings.MAX_VALUES} conditions")
        conditions = []
        for item in value:
            unknown = sorted(set(item) - {"filter", "value"})
            if unknown or "value" not in item:
                raise ThetaError(
                    f"{where}: a condition has `filter` and `value`, not {', '.join(unknown) or 'no value'}"
                )
            filter_ = item.get("filter")
            if filter_ is not None:
                _text(filter_, "filter", where)
            inner = _value(item["value"], where)
            if isinstance(inner, settings.Filtered):
                raise ThetaError(f"{where}: conditions cannot nest")
            conditions.append((filter_, inner))
        return settings.Filtered(tuple(conditions))
    if isinstance(value, dict):
        return _value([value], where)
    if isinstance(value, list):
        if not 1 <= len(value) <= settings.MAX_VALUES:
            raise ThetaError(f"{where}: a gradient needs 1 to {settings.MAX_VALUES} values, not {len(value)}")
        return settings.Gradient(tuple(_number(item, where) for item in value))
    return _number(value, where)


def _numbers(value: settings.Value) -> set[float]:
    if isinstance(value, settings.Gradient):
        return set(value.values)
    if isinstance(value, settings.Filtered):
        return set().union(*(_numbers(v) for _, v in value.conditions))
    return {value}


def _parameters(table: Any, where: str) -> dict[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ThetaError(f"{where}: parameters must be a mapping")
    for name in table:
        _text(name, "a parameter name", where)
    return dict(table)


def parse(doc: Any, where: str) -> Recipe:
    """The recipe's revisions, base and strategy choice; every refusal names the file and the option."""
    if not isinstance(doc, dict):
        raise ThetaError(f"{where}: a mergekit configuration is a YAML mapping (merge_method, models, ...)")
    layer_range = None
    if "slices" in doc and "models" not in doc:
        doc, layer_range = _one_slice(doc, where)
    for key in doc:
        if key in REFUSED_KEYS:
            raise ThetaError(f"{where}: mergekit option {key!r} is not supported: {REFUSED_KEYS[key]}")
        if key not in TOP_LEVEL:
            raise ThetaError(
                f"{where}: mergekit option {key!r} is not supported (git-theta reads {', '.join(TOP_LEVEL)})"
            )
    method = _text(doc.get("merge_method"), "merge_method", where)
    if method not in METHODS:
        raise ThetaError(
            f"{where}: mergekit merge_method {method!r} is not supported (supported: {', '.join(sorted(METHODS))})"
        )
    strategy = METHODS[method]
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise ThetaError(f"{where}: needs `models:`, a list of {{model: REVISION, parameters: ...}}")
    if len(models) > MAX_MODELS:
        raise ThetaError(f"{where}: {len(models)} models, more than the {MAX_MODELS} allowed")
    per_model: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(models, start=1):
        at = f"{where}: models[{index}]"
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict) or sorted(set(entry) - {"model", "parameters"}):
            extra = sorted(set(entry) - {"model", "parameters"}) if isinstance(entry, dict) else []
            raise ThetaError(
                f"{at}: "
                + (f"option {extra[0]!r} is not supported" if extra else "must be {model: REVISION, parameters: ...}")
            )
        model = _text(entry.get("model"), "model", at)
        if model in per_model:
            raise ThetaError(f"{at}: model {model!r} is listed twice")
        per_model[model] = _parameters(entry.get("parameters"), at)
    base = doc.get("base_model")
    if base is not None:
        base = _text(base, "base_model", where)
    revisions, base = _versions(method, list(per_model), base, where)
    arguments = _arguments(method, strategy, revisions, per_model, _parameters(doc.get("parameters"), where), where)
    dtype = doc.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ThetaError(f"{where}: dtype {dtype!r} is not supported (one of {', '.join(DTYPES)})")
    choice = make_choice(strategy, arguments, f"{where} (merge_method {method})")
    return Recipe(revisions, base, choice, DTYPES[dtype] if dtype else None, layer_range)


def _one_slice(doc: dict[str, Any], where: str) -> tuple[dict[str, Any], tuple[int, int]]:
    """mergekit's `slices:` with one slice whose sources all span the same layers is its `models:` form."""
    slices = doc["slices"]
    refusal = f"{where}: mergekit option 'slices' is not supported: {REFUSED_KEYS['slices']}"
    if not isinstance(slices, list) or len(slices) != 1 or not isinstance(slices[0], dict):
        raise ThetaError(refusal)
    extra = sorted(set(slices[0]) - {"sources", "base_model", "parameters"})
    if extra:
        raise ThetaError(f"{where}: slices[1]: option {extra[0]!r} is not supported")
    sources = slices[0].get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(source, dict) for source in sources):
        raise ThetaError(f"{where}: slices[1]: needs `sources:`, a list of {{model, layer_range}}")
    ranges = {
        tuple(source["layer_range"]) if isinstance(source.get("layer_range"), list) else None for source in sources
    }
    layer_range = ranges.pop() if len(ranges) == 1 else None
    if (
        layer_range is None
        or len(layer_range) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in layer_range)
    ):
        raise ThetaError(refusal + " (every source needs the same layer_range [FIRST, END])")
    models = []
    for index, source in enumerate(sources, start=1):
        extra = sorted(set(source) - {"model", "layer_range", "parameters"})
        if extra:
            raise ThetaError(f"{where}: slices[1].sources[{index}]: option {extra[0]!r} is not supported")
        models.append({key: value for key, value in source.items() if key != "layer_range"})
    converted = {key: value for key, value in doc.items() if key != "slices"}
    converted["models"] = models
    for key in ("base_model", "parameters"):
        if key in slices[0]:
            if key in doc:
                raise ThetaError(f"{where}: {key} is given both in the slice and at the top; give it once")
            converted[key] = slices[0][key]
    return converted, (layer_range[0], layer_range[1])


def _versions(method: str, models: list[str], base: str | None, where: str) -> tuple[list[str], str | None]:
    use = BASES.get(method, "required")
    if use == "none":
        if base is not None and base not in models:
            raise ThetaError(
                f"{where}: merge_method {method} merges the listed models; base_model {base!r} would be ignored"
            )
        return models, None
    if use == "first":
        if base is None:
            raise ThetaError(f"{where}: merge_method {method} needs base_model (the t = 0 end)")
        others = [model for model in models if model != base]
        if len(others) != 1:
            raise ThetaError(
                f"{where}: merge_method {method} merges base_model with exactly one other model, not {len(others)}"
            )
        return [base, *others], None
    if use == "required" and base is None:
        raise ThetaError(f"{where}: merge_method {method} needs base_model (the task vectors are taken from it)")
    # the base model is not a task vector: mergekit skips it among the models, so do we
    others = [model for model in models if model != base]
    if len(others) < 1 or (len(others) < 2 and use == "optional" and base is None):
        raise ThetaError(f"{where}: merge_method {method} needs more models besides base_model")
    return others, base


def _arguments(
    method: str,
    strategy: str,
    revisions: list[str],
    per_model: Mapping[str, Mapping[str, Any]],
    global_: Mapping[str, Any],
    where: str,
) -> dict[str, Any]:
    try:
        plugin = plugins.strategy(strategy)
    except ThetaError as error:
        raise ThetaError(f"{where}: merge_method {method}: {error}") from None
    # an alias (ties' and dare's `density`) passes through as it is: make_choice converts it by the one rule
    declared = {argument.name: argument for argument in plugin.arguments}
    declared.update({alias.argument.name: alias.argument for alias in plugin.aliases})
    names = sorted(set(global_).union(*(per_model[model] for model in revisions)))
    for model, table in per_model.items():
        if model not in revisions and table:
            raise ThetaError(
                f"{where}: parameters of base_model {model!r} are not used by merge_method {method}; remove them"
            )
    arguments: dict[str, Any] = {}
    for name in names:
        at = f"{where}: parameter {name!r}"
        given = {model: per_model[model][name] for model in revisions if name in per_model[model]}
        if name in FLAG_DEFAULTS and name not in declared:
            flags = [*given.values(), *([global_[name]] if name in global_ else [])]
            default = FLAG_DEFAULTS[name].get(method)
            if default is None or any(value is not default for value in flags):
                raise ThetaError(
                    f"{at}: only mergekit's default ({default}) matches git-theta's {strategy!r}"
                    if default is not None
                    else f"{at}: not a parameter of merge_method {method}"
                )
            continue
        if name == "int8_mask" and name not in declared:
            if any(value is not False for value in [*given.values(), global_.get(name, False)]):
                raise ThetaError(f"{at}: int8_mask: true is not supported (git-theta computes in float64)")
            continue
        glob = _value(global_[name], at) if name in global_ else None
        values = {model: _value(value, f"{at} of {model!r}") for model, value in given.items()}
        arguments.update(_translate(method, name, declared, revisions, values, glob, at))
    return arguments


def _same(
    values: Mapping[str, settings.Value], glob: settings.Value | None, revisions: list[str], at: str, why: str
) -> settings.Value:
    """One value for every model (per-model values that are all equal, or the global one)."""
    found = {values.get(model, glob) for model in revisions}
    if None in found or len(found) != 1:
        raise ThetaError(f"{at}: {why}")
    return found.pop()  # type: ignore[return-value]


def _translate(
    method: str,
    name: str,
    declared: Mapping[str, Any],
    revisions: list[str],
    values: Mapping[str, settings.Value],
    glob: settings.Value | None,
    at: str,
) -> dict[str, Any]:
    argument = declared.get(name)
    if argument is not None and settings.per_model(argument):
        return {name: settings.PerVersion(dict(values), glob)}
    if argument is not None:
        return {
            name: _same(values, glob, revisions, at, "git-theta takes one value for all models here, not one per model")
        }
    # mergekit names our strategies' arguments differently
    if method == "linear" and name == "weight":
        weights = [values.get(model, glob) for model in revisions]
        if not all(isinstance(w, float) for w in weights):
            raise ThetaError(
                f"{at}: linear takes one plain number per model "
                "(no gradients or filters: `weighted` has one weight per version)"
            )
        return {"weights": list(weights)}
    if name == "weight" and method in ("ties", "task_arithmetic", "dare_linear"):
        weight = _same(
            values,
            glob,
            revisions,
            at,
            f"{METHODS[method]!r} takes one weight for all models here (no per-model weight argument)",
        )
        # ties normalizes by the summed weights, so an equal weight cancels; task arithmetic and dare scale by it.
        if method == "ties":
            if 0.0 in _numbers(weight):
                raise ThetaError(f"{at}: a zero weight (mergekit then keeps the base) is not supported for ties")
            return {}
        return {"lambda": weight}
    raise ThetaError(
        f"{at}: not supported for merge_method {method} "
        f"(strategy {METHODS[method]!r} takes: {', '.join(declared) or 'nothing'})"
    )


def check_layers(layer_range: tuple[int, int], versions: list[Any], where: str) -> None:
    """A one-slice recipe must span the whole model: mergekit's layer_range [0, L) over L layers."""
    count = max(settings.layer_count(meta.params) for meta in versions)
    if layer_range != (0, count):
        raise ThetaError(
            f"{where}: slices: layer_range [{layer_range[0]}, {layer_range[1]}] is not the whole model, "
            f"which has {count} layers "
            f"([0, {count}]); layer slicing is not supported"
        )


def check_dtype(dtype: str, versions: list[Any], where: str) -> None:
    """mergekit's `dtype` is the dtype it computes and writes in; git-theta computes in float64 and keeps each
    parameter's dtype, which is the same result type only when every floating parameter already has that dtype."""
    for meta in versions:
        for name, entry in meta.params.items():
            if dtypes.is_float(entry.dtype) and entry.dtype != dtype:
                raise ThetaError(
                    f"{where}: dtype {dtype} but parameter {name!r} is {entry.dtype}; git-theta keeps each "
                    "parameter's dtype, so remove `dtype` (or convert the checkpoint)"
                )
