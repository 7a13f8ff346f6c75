"""Shared machinery of the geoloc_ros nodes: typed parameters, QoS, newest-frame processing, diagnostics.

Node parameters are declared from the same pydantic model that validates ``config/*.yaml`` and
``geoloc stack``: one definition, three front ends. Nested models become dotted parameter names
(``retrieval.top_k``), descriptions and numeric ranges come from the model's ``Field``s, and the
values are validated at start-up with errors that name the parameter.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, Generic, TypeVar, get_args, get_origin

import annotated_types
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from geoloc_ros.config import format_validation_error
from geoloc_ros.errors import ConfigError, GeolocError

ModelT = TypeVar("ModelT", bound=BaseModel)
ItemT = TypeVar("ItemT")

logger = logging.getLogger(__name__)


def sensor_qos(depth: int = 1) -> QoSProfile:
    """Sensor-data QoS (best effort, keep last ``depth``): a late frame is dropped, never queued."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


def reliable_qos(depth: int = 10) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def is_compressed_topic(node: Node, topic: str) -> bool:
    """Whether ``topic`` carries ``CompressedImage`` (image_transport's ``…/compressed``), judged on the
    name it has after the node's remappings (``-r /camera/image_raw:=/front/image_raw/compressed``)."""
    return node.resolve_topic_name(topic).rstrip("/").endswith("compressed")


# ------------------------------------------------------------------------------------------ parameters
def _flatten_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted name, field info, default)`` for every leaf field of a (nested) pydantic model."""
    leaves = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves += _flatten_fields(annotation, f"{prefix}{name}.")
        else:
            leaves.append((f"{prefix}{name}", info, info.get_default(call_default_factory=True)))
    return leaves


_PARAMETER_TYPES = {
    str: Parameter.Type.STRING,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    bool: Parameter.Type.BOOL,
    list[str]: Parameter.Type.STRING_ARRAY,
    list[float]: Parameter.Type.DOUBLE_ARRAY,
    list[int]: Parameter.Type.INTEGER_ARRAY,
}


def _ros_default(value: Any) -> Any:
    """A ROS-parameter-compatible default (ROS has no None and no tuples)."""
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def _descriptor(name: str, info: Any, read_only: bool = True) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=name, description=info.description or "", read_only=read_only)
    is_int = info.annotation is int
    low: Any = None
    high: Any = None
    for meta in info.metadata:
        if isinstance(meta, (annotated_types.Ge, annotated_types.Gt)):
            low = meta.ge if isinstance(meta, annotated_types.Ge) else meta.gt
        if isinstance(meta, (annotated_types.Le, annotated_types.Lt)):
            high = meta.le if isinstance(meta, annotated_types.Le) else meta.lt
    if low is not None and high is not None:
        if is_int:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        elif info.annotation is float:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
            ]
    elif low is not None or high is not None:
        descriptor.additional_constraints = (
            f"{'>= ' + str(low) if low is not None else ''}{' <= ' + str(high) if high is not None else ''}"
        )
    if info.default is None or (
        get_origin(info.annotation) is not None and type(None) in get_args(info.annotation)
    ):
        descriptor.dynamic_typing = True
    return descriptor


def declare_config(node: Node, model: type[ModelT], dynamic: Collection[str] = ()) -> ModelT:
    """Declare one parameter per field of ``model`` (read-only unless named in ``dynamic``), read them
    back, and validate. A parameter already declared (a lifecycle node configured again) keeps its value.

    Raises :class:`ConfigError` naming the parameter when a value is invalid.
    """
    values: dict[str, Any] = {}
    for name, info, default in _flatten_fields(model):
        ros_default = _ros_default(default)
        # Required fields and empty lists (ROS cannot infer an empty list's type) are declared by type.
        declared_by_type = default is PydanticUndefined or ros_default == []
        if declared_by_type:
            ros_default = _PARAMETER_TYPES.get(info.annotation, Parameter.Type.STRING)
        elif ros_default is None:  # optional without default: declared as an empty string ("unset")
            ros_default = ""
        try:
            if node.has_parameter(name):  # declared by an earlier configure of a lifecycle node
                param = node.get_parameter(name)
            else:
                descriptor = _descriptor(name, info, name not in dynamic)
                param = node.declare_parameter(name, ros_default, descriptor)
        except ParameterException as exc:  # ROS' own range/type checks
            raise ConfigError(f"node {node.get_name()} parameter: {name}: {exc}") from None
        value = param.value
        if (value == "" and default is None) or (value is None and declared_by_type):
            continue  # unset: the model's default applies, or a required field is reported missing
        cursor: dict[str, Any] = values
        *parents, leaf = name.split(".")
        for part in parents:
            cursor = cursor.setdefault(part, {})
        cursor[leaf] = value
    unknown = undeclared_overrides(node, {name for name, _, _ in _flatten_fields(model)})
    if unknown:
        node.get_logger().warning(
            f"ignored, not parameters of {node.get_name()} (a typo?): {', '.join(unknown)}; "
            "`ros2 param list` shows its parameters"
        )
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"node {node.get_name()} parameter")) from None


def undeclared_overrides(node: Node, known: Collection[str]) -> list[str]:
    """The values given to ``node`` (parameter file, ``-p``, ``parameter_overrides``) that name none of
    its parameters: ROS ignores them without a word. ROS' own (``qos_overrides.*``, ``use_sim_time``) are
    not counted."""
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy has no public accessor
    return sorted(
        name
        for name in overrides
        if name not in known and not node.has_parameter(name) and not name.startswith("qos_overrides.")
    )


def watch_dynamic_parameters(
    node: Node,
    model: type[ModelT],
    current: Callable[[], ModelT],
    apply: Callable[[ModelT], None],
    dynamic: Collection[str],
) -> None:
    """Let ``ros2 param set`` change the ``dynamic`` parameters (declared writable by :func:`declare_config`)
    at run time: a change is validated through ``model`` (ranges, types) and handed to ``apply``; an
    invalid one is refused with the validation message. The others stay read-only (ROS refuses them)."""

    def on_set(params: list[Parameter]) -> SetParametersResult:
        updates = {p.name: p.value for p in params if p.name in dynamic}
        if not updates:
            return SetParametersResult(successful=True)
        data = current().model_dump()
        for name, value in updates.items():
            cursor = data
            *parents, leaf = name.split(".")
            for part in parents:
                cursor = cursor[part]
            cursor[leaf] = value
        try:
            new = model.model_validate(data)
        except ValidationError as exc:
            reason = format_validation_error(exc, f"node {node.get_name()} parameter")
            return SetParametersResult(successful=False, reason=reason)
        apply(new)
        node.get_logger().info(f"parameters changed: {updates}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


# ------------------------------------------------------------------------------------------ processing
class LatestFrameWorker(Generic[ItemT]):
    """Processes only the newest item on a worker thread; items that arrive while busy replace the
    pending one and are counted as dropped (never an unbounded queue).

    ``process`` exceptions are caught and handed to ``on_error`` so one bad frame never kills the node.
    """

    def __init__(
        self,
        process: Callable[[ItemT], None],
        on_error: Callable[[ItemT, BaseException], None],
        name: str = "geoloc-worker",
    ) -> None:
        self._process = process
        self._on_error = on_error
        self._pending: ItemT | None = None
        self._cond = threading.Condition()
        self._stop = False
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: ItemT) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = item
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._pending
                self._pending = None
            assert item is not None
            try:
                self._process(item)
            except Exception as exc:
                self._on_error(item, exc)
            finally:
                self.processed += 1

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending (for tests and offline replay)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if self._pending is None:
                    return True
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=5.0)


# ------------------------------------------------------------------------------------------ diagnostics
class RateMeter:
    """Events per second over a sliding window of wall-clock time (for diagnostics only)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._times: deque[float] = deque()
        self._window = window_s

    def tick(self) -> None:
        now = time.monotonic()
        self._times.append(now)
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()

    @property
    def rate_hz(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


# Bad inputs of one kind are logged at most once per this many seconds.
LOG_INTERVAL_S = 5.0


class NodeDiagnostics:
    """Counters and gauges published as one ``DiagnosticStatus`` on ``/diagnostics`` every period.

    Every subscription and timer callback of a node is wrapped with :meth:`guard`: an exception
    from one message is counted (``bad_input_<kind>``, and ``exception_<type>`` when it is not one
    of the project's errors), logged rate-limited, and the node goes on.

    Plain ``diagnostic_msgs`` (diagnostic_updater is not available everywhere). The level is WARN
    when no output (the ``output_key`` counter) was produced in the last period while inputs arrived
    (the ``input_key`` counter), or when bad inputs were seen in the last period.
    """

    def __init__(
        self,
        node: Node,
        output_key: str = "poses_published",
        hardware_id: str = "geoloc_ros",
        input_key: str = "frames_received",
        period_s: float = 1.0,
    ) -> None:
        self._node = node
        self._output_key = output_key
        self._input_key = input_key
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self._hardware_id = hardware_id
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.gauges: dict[str, float | str] = {}
        self._inputs_at_last = 0
        self._outputs_at_last = 0
        self._bad_at_last = 0
        self._logged_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.output_rate = RateMeter()
        self._timer = node.create_timer(period_s, self.publish)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def gauge(self, key: str, value: float | str) -> None:
        with self._lock:
            self.gauges[key] = value

    def bad_input(self, kind: str, reason: str) -> None:
        """Count a skipped input as ``bad_input_<kind>`` and log it (at most once per kind per
        :data:`LOG_INTERVAL_S`, with the number of repeats left unsaid)."""
        self.count(f"bad_input_{kind}")
        self._log_limited(kind, f"skipping bad {kind}: {reason}")

    def record_failure(self, kind: str, exc: BaseException) -> None:
        """What :meth:`guard` does with an exception: a project error is a bad input; anything
        else (OpenCV, numpy, a bug) is also counted as ``exception_<type>`` and logged as an error."""
        if isinstance(exc, GeolocError):
            self.bad_input(kind, str(exc))
            return
        self.count(f"bad_input_{kind}")
        self.count(f"exception_{type(exc).__name__}")
        self._log_limited(kind, f"{kind} callback failed, input skipped: {exc!r}", error=True)

    def guard(self, kind: str, callback: Callable[..., Any]) -> Callable[..., None]:
        """``callback`` made safe for a subscription or timer: no exception from one message ever
        reaches the executor (which would end the node); each is counted by ``kind``."""

        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:
                self.record_failure(kind, exc)

        return guarded

    def _log_limited(self, kind: str, text: str, error: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._logged_at.get(kind)
            if last is not None and now - last < LOG_INTERVAL_S:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._logged_at[kind] = now
            repeats = self._suppressed.pop(kind, 0)
        if repeats:
            text += f" ({repeats} more since the last message)"
        log = self._node.get_logger()
        (log.error if error else log.warning)(text)

    def status(self) -> DiagnosticStatus:
        with self._lock:
            counters, gauges = dict(self.counters), dict(self.gauges)
        inputs = counters.get(self._input_key, 0)
        outputs = counters.get(self._output_key, 0)
        bad = sum(v for k, v in counters.items() if k.startswith("bad_input"))
        level, message = DiagnosticStatus.OK, "ok"
        if bad > self._bad_at_last:
            level, message = DiagnosticStatus.WARN, f"{bad - self._bad_at_last} bad inputs skipped"
        elif inputs > self._inputs_at_last and outputs == self._outputs_at_last:
            level, message = DiagnosticStatus.WARN, "inputs arrive but no pose was produced"
        self._inputs_at_last, self._outputs_at_last, self._bad_at_last = inputs, outputs, bad
        gauges["output_rate_hz"] = round(self.output_rate.rate_hz, 2)
        values = [KeyValue(key=k, value=str(v)) for k, v in sorted({**counters, **gauges}.items())]
        return DiagnosticStatus(
            level=level,
            name=f"{self._node.get_name()}",
            message=message,
            hardware_id=self._hardware_id,
            values=values,
        )

    def publish(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        array.status = [self.status()]
        self._publisher.publish(array)


# ------------------------------------------------------------------------------------------ running
def run_node(
    factory: Callable[[], Node], args: list[str] | None = None, lifecycle_name: str | None = None
) -> int:
    """Entry-point body shared by all nodes: init, build (start-up errors exit with status 1 and a
    clear message), spin until shutdown, clean up. With ``--lifecycle`` on the command line the node's
    lifecycle variant (:mod:`geoloc_ros.nodes.lifecycle`, named ``lifecycle_name``) runs instead.

    Discovery is the environment's (``ROS_AUTOMATIC_DISCOVERY_RANGE``, ``ROS_LOCALHOST_ONLY``): a vehicle
    whose nodes run on several computers needs it beyond this host. Tests, CI and the demo keep to
    loopback through :mod:`geoloc_ros.nodes.isolation`."""
    if lifecycle_name is not None and "--lifecycle" in (sys.argv if args is None else args):
        from geoloc_ros.nodes.lifecycle import lifecycle_variant

        factory = lifecycle_variant(factory, lifecycle_name)  # type: ignore[arg-type]
    rclpy.init(args=args)
    node: Node | None = None
    try:
        try:
            node = factory()
        except (GeolocError, OSError) as exc:
            print(f"geoloc_ros: start-up failed: {exc}", file=sys.stderr)
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
