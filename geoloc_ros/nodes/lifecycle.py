"""Lifecycle (managed) variants of the geoloc_ros nodes (rclpy.lifecycle, REP-2002-style transitions).

``lifecycle_variant(PoseFusionNode, "pose_fusion")`` is a ``LifecycleNode`` with the plain node's code:

- constructed *unconfigured*: nothing is declared or loaded;
- **configure** runs the plain node's set-up (parameters validated, map bundle / model loaded, topics
  created); a start-up error fails the transition with its message instead of ending the process;
- **activate** starts processing: every subscription callback is gated and passes messages only while
  active; **deactivate** stops it again (timers such as diagnostics keep running);
- **cleanup** stops the worker thread and destroys what configure created (topics, services, timers,
  parameter callbacks); the parameters stay declared with their values, so a later configure reads them
  again. A *failed* configure is undone the same way, so a lifecycle manager can retry it (e.g. once the
  map's disk is mounted); **shutdown** does the cleanup from any state.

The plain nodes stay as they are (``ros2 run geoloc_ros bovw_localizer``); the entry points start the
lifecycle variant with ``--lifecycle`` (the launch file's ``lifecycle:=true``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node

from geoloc_ros.errors import GeolocError

# The entities a node creates, and how to destroy one of each kind.
_ENTITY_KINDS = ("publishers", "subscriptions", "services", "clients", "timers")


def _entities(node: Node) -> dict[str, set[Any]]:
    return {kind: set(getattr(node, kind)) for kind in _ENTITY_KINDS}


class _InitOnce(LifecycleNode):
    """Lets the plain node's ``__init__`` run again at configure without re-initialising the node."""

    def __init__(self, node_name: str, **node_kwargs: Any) -> None:
        if getattr(self, "_geoloc_node_ready", False):
            return
        super().__init__(node_name, **node_kwargs)
        self._geoloc_node_ready = True


def lifecycle_variant(plain: type[Node], node_name: str) -> type[LifecycleNode]:
    """The managed variant of ``plain`` (a geoloc node class whose ``__init__`` takes ``**node_kwargs``)."""

    class Managed(plain, _InitOnce):  # type: ignore[valid-type,misc]
        def __init__(self, **node_kwargs: Any) -> None:
            self._geoloc_active = False
            self._geoloc_kwargs = node_kwargs
            self._geoloc_callbacks: list[Callable[..., Any]] = []
            self._geoloc_baseline: dict[str, set[Any]] | None = None  # entities before configure
            _InitOnce.__init__(self, node_name, **node_kwargs)

        def create_subscription(
            self, msg_type: Any, topic: str, callback: Any, *args: Any, **kwargs: Any
        ) -> Any:
            def gated(msg: Any) -> None:
                if self._geoloc_active:
                    callback(msg)

            return super().create_subscription(msg_type, topic, gated, *args, **kwargs)

        def add_on_set_parameters_callback(self, callback: Callable[..., Any]) -> None:
            if self._geoloc_baseline is not None:  # one of configure's: removed at cleanup
                self._geoloc_callbacks.append(callback)
            super().add_on_set_parameters_callback(callback)

        def on_configure(self, state: State) -> TransitionCallbackReturn:
            self._geoloc_baseline = _entities(self)
            try:
                plain.__init__(self, **self._geoloc_kwargs)
            except (GeolocError, OSError) as exc:
                self.get_logger().error(f"configure failed: {exc}")
                self._geoloc_teardown()
                return TransitionCallbackReturn.FAILURE
            return TransitionCallbackReturn.SUCCESS

        def on_activate(self, state: State) -> TransitionCallbackReturn:
            self._geoloc_active = True
            return super().on_activate(state)

        def on_deactivate(self, state: State) -> TransitionCallbackReturn:
            self._geoloc_active = False
            return super().on_deactivate(state)

        def on_cleanup(self, state: State) -> TransitionCallbackReturn:
            self._geoloc_teardown()
            return TransitionCallbackReturn.SUCCESS

        def on_shutdown(self, state: State) -> TransitionCallbackReturn:
            self._geoloc_teardown()
            return TransitionCallbackReturn.SUCCESS

        def close(self) -> None:
            self._geoloc_teardown()

        def _geoloc_teardown(self) -> None:
            """Undo configure: stop the worker, destroy what it created (the parameters stay)."""
            self._geoloc_active = False
            baseline, self._geoloc_baseline = self._geoloc_baseline, None
            if baseline is None:
                return
            close = getattr(plain, "close", None)
            if callable(close):
                close(self)
            for kind, entities in _entities(self).items():
                destroy = getattr(self, f"destroy_{kind.rstrip('s')}")
                for entity in entities - baseline[kind]:
                    destroy(entity)
            for callback in self._geoloc_callbacks:
                self.remove_on_set_parameters_callback(callback)
            self._geoloc_callbacks.clear()

    Managed.__name__ = Managed.__qualname__ = f"Lifecycle{plain.__name__}"
    return Managed
