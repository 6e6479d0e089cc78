"""Impact Framework (IF) compatibility: the NN-CI plugins and IF builtins, and a manifest runner.

The four NN-CI plugins (``NNET``, ``NNEQ``, ``NNEmb``, ``NNC``) and IF's ``Sum``,
``Multiply`` and ``Coefficient`` are functions over IF input rows; the NN-CI ones
call :mod:`nn_tracker.footprint.formulas`, so results equal the original to the last bit.
:func:`run_manifest` computes a manifest in the IF 0.3 form the original used
(``global-config``, a plain ``pipeline`` list) or the IF 1.x form (``config``,
``pipeline: {compute: [...]}``), with ``defaults`` and ``pipeline`` inherited down
``tree.children``, and returns it with ``outputs`` on every node that has inputs.
Anything it cannot compute is an error naming the node and the field, never a
silent success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from nn_tracker.core.errors import ValidationError
from nn_tracker.core.inputs import deep_recursion
from nn_tracker.footprint import formulas as footprint

Row = dict[str, Any]
NNET_KEYS = (
    "hardware/count/training",
    "hardware/power/training",
    "servers/count/training",
    "servers/power/training",
    "time/training",
    "pue/training",
)
NNEQ_KEYS = ("servers/count/query", "servers/power/query", "time/query", "pue/query")
NNEMB_KEYS = ("list/device-count", "list/device-production-energy", "list/carbon-intensity", "list/energy-transport")
NNC_KEYS = ("location/datacenter-energy", "location/carbon-intensity", "location/energy-transport")
TOP_LEVEL = {"name", "description", "tags", "initialize", "tree", "explainer", "explain", "execution", "aggregation"}
AGGREGATION_TYPES = {"time": "time", "horizontal": "time", "component": "component", "vertical": "component"}


class _Node:
    """Where an error happened, for messages like ``tree.children.child-1 input 0: field``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, field: str, value: Any, rule: str) -> ValidationError:
        return ValidationError(f"{self.path}: {field}", value, rule)


def _number(node: _Node, index: int, row: Row, field: str) -> float:
    if field not in row or row[field] is None:
        raise node.error(f"input {index} field '{field}'", None, "must be present (give it in the input or defaults)")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise node.error(f"input {index} field '{field}'", value, "must be a finite number")
    return value


def _formula_error(
    node: _Node, index: int, plugin: str, exc: ValidationError, names: dict[str, Any]
) -> ValidationError:
    """A footprint formula's error, named as the manifest names it: node, input and field."""
    base, _, rest = exc.field.partition("[")
    field = names.get(base)
    if isinstance(field, list) and rest:
        field = field[int(rest.rstrip("]"))]
    where = f"input {index} field '{field}' ({plugin})" if isinstance(field, str) else f"input {index}: {exc.field}"
    return node.error(where, exc.value, exc.rule)


def _mapping(node: _Node, plugin: str, config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``input-parameters`` mapping of an NN-CI plugin, with exactly the original's keys."""
    params = config.get("input-parameters")
    if not isinstance(params, dict):
        raise node.error(f"plugin {plugin} input-parameters", params, "must be a mapping of the plugin's keys")
    unknown = sorted(set(params) - set(keys))
    if unknown:
        raise node.error(f"plugin {plugin} input-parameters.{unknown[0]}", params[unknown[0]], "is not a known key")
    missing = [k for k in keys if k not in params]
    if missing:
        raise node.error(f"plugin {plugin} input-parameters.{missing[0]}", None, "is missing")
    return params


def _output(node: _Node, plugin: str, config: dict[str, Any]) -> str:
    name = config.get("output-parameter")
    if not isinstance(name, str) or not name:
        raise node.error(f"plugin {plugin} output-parameter", name, "must be a field name")
    return name


def _lists(node: _Node, plugin: str, params: dict[str, Any], keys: tuple[str, ...]) -> list[list[str]]:
    lists = [params[k] for k in keys]
    for key, value in zip(keys, lists, strict=True):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise node.error(f"plugin {plugin} input-parameters.{key}", value, "must be a list of field names")
    if len({len(v) for v in lists}) > 1:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in zip(keys, lists, strict=True))
        raise node.error(f"plugin {plugin} input-parameters", sizes, "must be lists of equal length")
    return lists


def nnet(node: _Node, config: dict[str, Any], rows: list[Row]) -> list[Row]:
    """nn-et: training energy in kWh."""
    params, out = _mapping(node, "NNET", config, NNET_KEYS), _output(node, "NNET", config)
    result = []
    for i, row in enumerate(rows):
        n_acc, p_acc, n_srv, p_srv, hours, pue = (_number(node, i, row, params[k]) for k in NNET_KEYS)
        try:
            value = footprint.training_energy_kwh(
                accelerator_count=n_acc,
                accelerator_power_w=p_acc,
                server_count=n_srv,
                server_power_w=p_srv,
                hours=hours,
                pue=pue,
            )
        except ValidationError as exc:
            names = ("accelerator_count", "accelerator_power_w", "server_count", "server_power_w", "hours", "pue")
            fields = {n: params[k] for n, k in zip(names, NNET_KEYS, strict=True)}
            raise _formula_error(node, i, "NNET", exc, fields) from None
        result.append({**row, out: value})
    return result


def nneq(node: _Node, config: dict[str, Any], rows: list[Row]) -> list[Row]:
    """nn-eq: querying energy in kWh."""
    params, out = _mapping(node, "NNEQ", config, NNEQ_KEYS), _output(node, "NNEQ", config)
    result = []
    for i, row in enumerate(rows):
        n_srv, p_srv, hours, pue = (_number(node, i, row, params[k]) for k in NNEQ_KEYS)
        try:
            value = footprint.querying_energy_kwh(server_count=n_srv, server_power_w=p_srv, hours=hours, pue=pue)
        except ValidationError as exc:
            names = ("server_count", "server_power_w", "hours", "pue")
            fields = {n: params[k] for n, k in zip(names, NNEQ_KEYS, strict=True)}
            raise _formula_error(node, i, "NNEQ", exc, fields) from None
        result.append({**row, out: value})
    return result


def nnemb(node: _Node, config: dict[str, Any], rows: list[Row]) -> list[Row]:
    """nn-emb: embodied carbon in gCO2e (unamortised, as the original)."""
    params, out = _mapping(node, "NNEmb", config, NNEMB_KEYS), _output(node, "NNEmb", config)
    counts, energies, intensities, taus = _lists(node, "NNEmb", params, NNEMB_KEYS)
    result = []
    names = {
        "count": counts,
        "manufacturing_energy_kwh": energies,
        "intensity_g_per_kwh": intensities,
        "transport_factor": taus,
    }
    for i, row in enumerate(rows):
        try:
            value = footprint.embodied_carbon_g(
                [_number(node, i, row, f) for f in counts],
                [_number(node, i, row, f) for f in energies],
                [_number(node, i, row, f) for f in intensities],
                [_number(node, i, row, f) for f in taus],
            )
        except ValidationError as exc:
            raise _formula_error(node, i, "NNEmb", exc, names) from None
        result.append({**row, out: value})
    return result


def nnc(node: _Node, config: dict[str, Any], rows: list[Row]) -> list[Row]:
    """nn-c: operational carbon in gCO2e over datacentres."""
    params, out = _mapping(node, "NNC", config, NNC_KEYS), _output(node, "NNC", config)
    energies, intensities, taus = _lists(node, "NNC", params, NNC_KEYS)
    result = []
    names = {"energy_kwh": energies, "intensity_g_per_kwh": intensities, "transport_factor": taus}
    for i, row in enumerate(rows):
        try:
            value = footprint.operational_carbon_g(
                [_number(node, i, row, f) for f in energies],
                [_number(node, i, row, f) for f in intensities],
                [_number(node, i, row, f) for f in taus],
            )
        except ValidationError as exc:
            raise _formula_error(node, i, "NNC", exc, names) from None
        result.append({**row, out: value})
    return result


def _field_list(node: _Node, plugin: str, config: dict[str, Any]) -> list[str]:
    fields = config.get("input-parameters")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise node.error(f"plugin {plugin} input-parameters", fields, "must be a non-empty list of field names")
    return fields


def _check_keys(node: _Node, plugin: str, config: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise node.error(f"plugin {plugin} config.{unknown[0]}", config[unknown[0]], "is not a known key")


Plugin = Callable[["_Node", dict[str, Any], list[Row]], list[Row]]


def _fold(plugin: str, step: Callable[[float, float], float], start: float) -> Plugin:
    """An IF builtin that folds its input parameters, in their order, into the output parameter."""

    def run(node: _Node, config: dict[str, Any], rows: list[Row]) -> list[Row]:
        _check_keys(node, plugin, config, {"input-parameters", "output-parameter"})
        fields, out = _field_list(node, plugin, config), _output(node, plugin, config)
        result = []
        for i, row in enumerate(rows):
            value = start
            for field in fields:
                value = step(value, _number(node, i, row, field))
            result.append({**row, out: value})
        return result

    return run


builtin_sum = _fold("Sum", lambda total, x: total + x, 0.0)
builtin_multiply = _fold("Multiply", lambda product, x: product * x, 1.0)


def builtin_coefficient(node: _Node, config: dict[str, Any], rows: list[Row]) -> list[Row]:
    """IF ``Coefficient``: one input parameter times a constant."""
    _check_keys(node, "Coefficient", config, {"input-parameter", "coefficient", "output-parameter"})
    field, out = config.get("input-parameter"), _output(node, "Coefficient", config)
    coefficient = config.get("coefficient")
    if not isinstance(field, str):
        raise node.error("plugin Coefficient input-parameter", field, "must be a field name")
    if isinstance(coefficient, bool) or not isinstance(coefficient, (int, float)) or not math.isfinite(coefficient):
        raise node.error("plugin Coefficient coefficient", coefficient, "must be a finite number")
    return [{**row, out: _number(node, i, row, field) * coefficient} for i, row in enumerate(rows)]


NNCI_METHODS: dict[str, Plugin] = {"NNET": nnet, "NNEQ": nneq, "NNEmb": nnemb, "NNC": nnc}
BUILTINS: dict[str, Plugin] = {"Sum": builtin_sum, "Multiply": builtin_multiply, "Coefficient": builtin_coefficient}


def _resolve_plugin(name: str, spec: Any) -> tuple[Plugin, dict[str, Any]]:
    where = _Node(f"initialize.plugins.{name}")
    if not isinstance(spec, dict):
        raise where.error("definition", spec, "must be a mapping with path and method")
    path, method = spec.get("path"), spec.get("method")
    if not isinstance(path, str) or not isinstance(method, str):
        raise where.error("path and method", f"{path!r}, {method!r}", "must be strings")
    if "global-config" in spec and "config" in spec:
        raise where.error("global-config", "and config", "must not both be given (IF 0.3 vs 1.x)")
    config = spec.get("global-config", spec.get("config")) or {}
    if not isinstance(config, dict):
        raise where.error("config", config, "must be a mapping")
    unknown = sorted(set(spec) - {"path", "method", "global-config", "config", "parameter-metadata", "mapping"})
    if unknown:
        raise where.error(unknown[0], spec[unknown[0]], "is not a known plugin key")
    if isinstance(path, str) and "nnci" in path.replace("-", "").lower() and method in NNCI_METHODS:
        return NNCI_METHODS[method], config
    if (
        path in ("builtin", "@grnsft/if-plugins", "@grnsft/if-core", "@grnsft/if-unofficial-plugins")
        and method in BUILTINS
    ):
        return BUILTINS[method], config
    raise where.error(
        "method",
        f"{path}:{method}",
        "is not a plugin nn-tracker can run (NN-CI NNET, NNEQ, NNEmb, NNC; builtin Sum, Multiply, Coefficient)",
    )


def _pipeline_names(node: _Node, pipeline: Any) -> list[str]:
    if isinstance(pipeline, list):  # IF 0.3
        names = pipeline
    elif isinstance(pipeline, dict):  # IF 1.x
        unknown = sorted(set(pipeline) - {"observe", "regroup", "compute"})
        if unknown:
            raise node.error(f"pipeline.{unknown[0]}", pipeline[unknown[0]], "is not a pipeline stage")
        if pipeline.get("observe") or pipeline.get("regroup"):
            raise node.error("pipeline", "observe/regroup", "is not supported by nn-tracker's runner (compute only)")
        names = pipeline.get("compute") or []
    else:
        raise node.error("pipeline", pipeline, "must be a list (IF 0.3) or a mapping with compute (IF 1.x)")
    if not all(isinstance(n, str) for n in names):
        raise node.error("pipeline", names, "must list plugin names")
    return names


def run_manifest(manifest: Any) -> dict[str, Any]:
    """Compute a manifest; return a copy with ``outputs`` on every node that has ``inputs``.

    Raises:
        ValidationError: anything that cannot be computed, naming the node and the field.
    """
    try:
        return _run_manifest(manifest)
    except (TypeError, AttributeError, KeyError) as exc:  # a value of the wrong shape that no check above named
        raise ValidationError("manifest", type(exc).__name__, f"must follow the IF manifest format ({exc})") from None


def _run_manifest(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise ValidationError("manifest", type(manifest).__name__, "must be a YAML mapping")
    unknown = sorted(set(manifest) - TOP_LEVEL)
    if unknown:
        raise ValidationError(
            f"manifest.{unknown[0]}", "...", "is not supported (known: " + ", ".join(sorted(TOP_LEVEL)) + ")"
        )
    plugins_spec = (
        (manifest.get("initialize") or {}).get("plugins") if isinstance(manifest.get("initialize"), dict) else None
    )
    if not isinstance(plugins_spec, dict) or not plugins_spec:
        raise ValidationError("manifest.initialize.plugins", plugins_spec, "must define at least one plugin")
    plugins = {name: _resolve_plugin(name, spec) for name, spec in plugins_spec.items()}
    tree = manifest.get("tree")
    if not isinstance(tree, dict):
        raise ValidationError("manifest.tree", tree, "must be a mapping")
    with deep_recursion():
        result: dict[str, Any] = _unshared(manifest)  # a YAML alias used by two nodes must give each its own outputs
    computed = _compute(result["tree"], _Node("tree"), plugins, None, {})
    if computed == 0:
        raise ValidationError("manifest.tree", "no inputs", "must have at least one node with inputs to compute")
    if manifest.get("aggregation") is not None:
        _aggregate(result, _aggregation_methods(plugins_spec))
    return result


def _aggregation_methods(plugins_spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each parameter's ``aggregation-method`` from the plugins' ``parameter-metadata`` (a later plugin wins)."""
    methods: dict[str, dict[str, str]] = {}
    for name, spec in plugins_spec.items():
        metadata = spec.get("parameter-metadata") or {}
        for side in ("inputs", "outputs"):
            for parameter, about in (metadata.get(side) or {}).items():
                method = about.get("aggregation-method") if isinstance(about, dict) else None
                if not isinstance(method, dict) or not set(method.values()) <= {"sum", "avg", "none", "copy"}:
                    where = f"initialize.plugins.{name}.parameter-metadata.{side}.{parameter}.aggregation-method"
                    raise ValidationError(where, method, "must map time and component to sum, avg, none or copy")
                methods[parameter] = method
    return methods


def _aggregate(manifest: dict[str, Any], methods: dict[str, dict[str, str]]) -> None:
    """IF 1.x's aggregation, as the official ``if-run`` does it (``lib/aggregate.ts``).

    A leaf gets ``aggregated`` over its outputs (``time``); a node with children gets as outputs the
    children's i-th outputs aggregated (``component``; IF assumes one time grid), then ``aggregated`` over
    them. A parameter without ``parameter-metadata`` is copied from the last output, as IF does.
    """
    aggregation = manifest["aggregation"]
    if not isinstance(aggregation, dict) or not isinstance(aggregation.get("metrics"), list):
        raise ValidationError("manifest.aggregation", aggregation, "must be a mapping with a list of metrics")
    metrics = aggregation["metrics"]
    kind = aggregation.get("type")
    if kind not in (*AGGREGATION_TYPES, "both"):
        raise ValidationError("manifest.aggregation.type", kind, "must be time, component or both")

    def into_one(node: _Node, outputs: list[Row], temporal: bool) -> Row:
        result: Row = {}
        for index, output in enumerate(outputs):
            for metric in [*metrics, "timestamp", "duration"]:
                if not isinstance(output, dict) or metric not in output:
                    raise node.error(f"output {index}", metric, "must have every aggregation metric")
                if metric in ("timestamp", "duration"):
                    if temporal:
                        result[metric] = output[metric]
                    continue
                method = methods.get(metric, {}).get("component" if temporal else "time", "copy")
                if method == "none":
                    continue
                if method == "copy":
                    result[metric] = output[metric]
                    continue
                result[metric] = result.get(metric, 0) + float(output[metric])
                if index == len(outputs) - 1 and method == "avg":
                    result[metric] /= len(outputs)
        return result

    def walk(node_dict: dict[str, Any], node: _Node) -> None:
        children = node_dict.get("children")
        for name, child in (children or {}).items():
            walk(child, _Node(f"{node.path}.children.{name}"))
        if not children:
            if kind in ("time", "horizontal", "both"):
                node_dict["aggregated"] = into_one(node, node_dict.get("outputs") or [], False)
        elif kind in ("component", "vertical", "both"):
            rows = [child.get("outputs") or [] for child in children.values()]
            if any(len(r) < len(rows[0]) for r in rows):
                raise node.error("children", "outputs of different lengths", "must share one time grid to aggregate")
            outputs = [into_one(node, [r[i] for r in rows], True) for i in range(len(rows[0]))]
            node_dict["outputs"] = outputs
            node_dict["aggregated"] = into_one(node, outputs, False)

    walk(manifest["tree"], _Node("tree"))


def _unshared(value: Any) -> Any:
    """A copy in which no mapping or list appears twice (``copy.deepcopy`` keeps what YAML aliases share)."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _check_finite(node: _Node, plugin: str, rows: list[Row]) -> None:
    """Refuse a result that overflowed (``inf``/``nan`` is not a number IF or JSON can carry)."""
    for i, row in enumerate(rows):
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise node.error(f"input {i}: {key} from plugin {plugin}", value, "must be finite (inputs overflow)")


def _compute(
    node_dict: dict[str, Any],
    node: _Node,
    plugins: dict[str, tuple[Plugin, dict[str, Any]]],
    pipeline: Any,
    defaults: dict[str, Any],
) -> int:
    """Compute a node and its children in place; return how many nodes were computed."""
    if not isinstance(node_dict, dict):
        raise node.error("node", node_dict, "must be a mapping")
    pipeline = node_dict.get("pipeline", pipeline)
    own_defaults = node_dict.get("defaults") or {}
    if not isinstance(own_defaults, dict):
        raise node.error("defaults", own_defaults, "must be a mapping")
    defaults = {**defaults, **own_defaults}
    count = 0
    children = node_dict.get("children")
    if children is not None:
        if not isinstance(children, dict):
            raise node.error("children", children, "must be a mapping of named nodes")
        for name, child in children.items():
            count += _compute(child, _Node(f"{node.path}.children.{name}"), plugins, pipeline, defaults)
    inputs = node_dict.get("inputs")
    if inputs is None:
        if children is None:
            raise node.error("inputs", None, "must be given on a node without children")
        return count
    if not isinstance(inputs, list) or not all(isinstance(r, dict) for r in inputs):
        raise node.error("inputs", inputs, "must be a list of mappings")
    if not inputs:
        raise node.error("inputs", inputs, "must list at least one observation (or leave the node out)")
    names = _pipeline_names(node, pipeline)
    if not names:
        raise node.error("pipeline", pipeline, "must name at least one plugin for a node with inputs")
    overrides = node_dict.get("config") or {}
    rows = [
        {
            **{k: v for k, v in defaults.items() if r.get(k) is None},
            **{k: v for k, v in r.items() if v is not None or k not in defaults},
        }
        for r in inputs
    ]
    for name in names:
        if name not in plugins:
            raise node.error("pipeline", name, "must name a plugin defined in initialize.plugins")
        plugin, config = plugins[name]
        node_config = overrides.get(name) if isinstance(overrides, dict) else None
        rows = plugin(node, {**config, **(node_config or {})}, rows)
        _check_finite(node, name, rows)
    node_dict["outputs"] = rows
    return count + 1
