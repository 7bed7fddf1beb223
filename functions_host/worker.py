"""The Python side, unchanged: ``azure-functions-runtime`` indexes and invokes the function app.

In Azure the .NET host starts a thin proxy worker that loads ``azure-functions-runtime`` (the
version pinned in ``requirements.txt``, "runtime versioning", Microsoft Learn: *Python 3.13+
changes in Azure Functions*) and drives it with gRPC messages. This module drives the very same
package in-process, through the same two entry points:

- :func:`azure_functions_runtime.worker_init_request` — loads the binding registry, imports
  ``function_app.py`` from the app directory, validates and indexes every function (the same
  checks that refuse a broken app in Azure) and registers them in the runtime's function
  registry. Its reply carries the function metadata the host routes by (name, id and the raw
  binding JSON of each function).
- :func:`azure_functions_runtime.native_invocation.invocation_request_native` — the runtime's
  protobuf-free invocation: it decodes the input ``Datum`` with the binding converters of
  ``azure.functions`` (``HttpRequestConverter``, ``TimerRequestConverter``), calls the function
  (``async def`` on the worker's event loop, ``def`` on the runtime's thread pool) and encodes
  the return value (``HttpResponseConverter``).

The messages the runtime expects from the host (``properties["protos"]``) are the gRPC classes
of the Functions language-worker protocol; the runtime only constructs them and reads their
fields, so :class:`_Protos` supplies plain containers with the same names and fields
(azure-notes §6.1).

The runtime keeps its registry in module globals: one function app per process, as in Azure.
:func:`load_worker` therefore returns one :class:`Worker` per process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import azure_functions_runtime as runtime
from azure_functions_runtime.bindings.datumdef import Datum
from azure_functions_runtime.handle_event import _functions as runtime_registry
from azure_functions_runtime.native_invocation import invocation_request_native
from azure_functions_runtime.version import VERSION as RUNTIME_VERSION

__all__ = [
    "RUNTIME_VERSION",
    "Datum",
    "FunctionMetadata",
    "IndexingError",
    "InvocationFailedError",
    "Worker",
    "load_worker",
]

logger = logging.getLogger("functions_host")

_T = TypeVar("_T")
_CLOSE_TIMEOUT_S = 10.0


class IndexingError(RuntimeError):
    """The runtime refused the function app at worker init (the host then serves 503, then stops)."""


class InvocationFailedError(RuntimeError):
    """The function raised, or its return value could not be encoded; the host answers 500."""


# --- the host's message types, as plain containers ---------------------------------------------


class _Message:
    """A protobuf message stand-in: keyword fields become attributes, unset fields read as ``None``."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.__dict__.items())
        return f"{type(self).__name__}({fields})"


class _BindingInfo(_Message):
    """``BindingInfo`` with its ``Direction`` and ``DataType`` enum values (FunctionRpc.proto)."""

    undefined = 0
    out = 1
    inout = 2


setattr(_BindingInfo, "in", 0)  # "in" is a Python keyword


class _StatusResult(_Message):
    Failure = 0
    Success = 1
    Cancelled = 2


class _SameSite:
    Lax = 1
    Strict = 2
    ExplicitNone = 3


setattr(_SameSite, "None", 0)  # "None" is a Python keyword


class _RpcHttpCookie(_Message):
    SameSite = _SameSite


class _Protos:
    """The message classes ``worker_init_request`` and the binding helpers construct."""

    BindingInfo = _BindingInfo
    StatusResult = _StatusResult
    RpcHttpCookie = _RpcHttpCookie
    RpcFunctionMetadata = type("RpcFunctionMetadata", (_Message,), {})
    RpcRetryOptions = type("RpcRetryOptions", (_Message,), {})
    RpcException = type("RpcException", (_Message,), {})
    RpcHttp = type("RpcHttp", (_Message,), {})
    TypedData = type("TypedData", (_Message,), {})
    ParameterBinding = type("ParameterBinding", (_Message,), {})
    NullableString = type("NullableString", (_Message,), {})
    NullableBool = type("NullableBool", (_Message,), {})
    NullableDouble = type("NullableDouble", (_Message,), {})
    NullableTimestamp = type("NullableTimestamp", (_Message,), {})
    WorkerMetadata = type("WorkerMetadata", (_Message,), {})
    WorkerInitResponse = type("WorkerInitResponse", (_Message,), {})
    FunctionMetadataResponse = type("FunctionMetadataResponse", (_Message,), {})
    FunctionLoadResponse = type("FunctionLoadResponse", (_Message,), {})
    FunctionEnvironmentReloadResponse = type("FunctionEnvironmentReloadResponse", (_Message,), {})
    InvocationResponse = type("InvocationResponse", (_Message,), {})


# --- what the host learns from indexing ---------------------------------------------------------


@dataclass(frozen=True)
class FunctionMetadata:
    """One indexed function as the host sees it: ``RpcFunctionMetadata`` with parsed raw bindings.

    Attributes:
        name: The function's name (the host orders HTTP routes by it).
        function_id: The runtime's id for the function, used to invoke it.
        bindings: Each binding's JSON object, e.g. ``{"type": "httpTrigger", "route": ...}``.
        is_async: Whether the runtime awaits it on the event loop (``async def``) rather than
            running it on its thread pool.
    """

    name: str
    function_id: str
    bindings: tuple[Mapping[str, Any], ...]
    is_async: bool = False

    @property
    def trigger(self) -> Mapping[str, Any]:
        """The trigger binding (``direction`` IN, ``type`` ending in ``Trigger``)."""
        for binding in self.bindings:
            if str(binding.get("type", "")).endswith("Trigger"):
                return binding
        raise ValueError(f"function {self.name!r} has no trigger binding")


@dataclass(frozen=True)
class Invocation:
    """What ``invocation_request_native`` returned for a successful call."""

    return_value: Datum | None


# --- the worker ------------------------------------------------------------------------------


class Worker:
    """The function app, indexed by the runtime, with the event loop its ``async def`` functions share.

    Use :func:`load_worker`. The loop runs in a daemon thread for the life of the process, as the
    worker's loop does in Azure, so clients bound to a loop (``azure.data.tables.aio``) survive
    across invocations (azure-notes §5.7).
    """

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = app_dir
        self.functions: tuple[FunctionMetadata, ...] = ()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="functions-worker", daemon=True)
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def index(self) -> None:
        """Run the runtime's worker init: import, validate and index ``function_app.py``.

        Raises:
            IndexingError: the runtime refused the app; the message is the runtime's.
        """
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))  # the worker imports the app from its directory
        runtime.start_threadpool_executor()  # sync (def) functions run there, as in Azure
        init = _Message(
            request=_Message(
                worker_init_request=_Message(capabilities={}, function_app_directory=str(self.app_dir))
            ),
            properties={"host": "127.0.0.1", "protos": _Protos},
        )
        reply = self.run_coroutine(runtime.worker_init_request(init))
        if reply.result.status != _StatusResult.Success:
            raise IndexingError(reply.result.exception.message)
        metadata = self.run_coroutine(runtime.functions_metadata_request(_Message()))
        self.functions = tuple(
            FunctionMetadata(
                name=item.name,
                function_id=item.function_id,
                bindings=tuple(json.loads(raw) for raw in item.raw_bindings),
                is_async=_registered_as_async(item.function_id),
            )
            for item in metadata.function_metadata_results or ()
        )

    def invoke(
        self,
        function: FunctionMetadata,
        inputs: Sequence[tuple[str, Datum]],
        trigger_metadata: Mapping[str, Datum] | None = None,
        *,
        timeout: float | None = None,
    ) -> Invocation:
        """Invoke ``function`` through the runtime and wait for it (from any thread but the loop's).

        Raises:
            InvocationFailedError: the function raised (the runtime logged the traceback to the
                ``azure.functions`` logger, as in Azure).
            TimeoutError: ``timeout`` seconds passed (host.json ``functionTimeout``).
        """
        invocation_id = str(uuid.uuid4())
        call = invocation_request_native(
            invocation_id, function.function_id, list(inputs), dict(trigger_metadata or {})
        )
        ok, return_value, _outputs, error, _traceback = self.run_coroutine(call, timeout=timeout)
        if not ok:
            raise InvocationFailedError(f"{function.name}: {error}")
        return Invocation(return_value)

    async def invoke_async(
        self,
        function: FunctionMetadata,
        inputs: Sequence[tuple[str, Datum]],
        trigger_metadata: Mapping[str, Datum],
    ) -> Invocation:
        """:meth:`invoke` from a coroutine already running on the worker's loop (timers)."""
        invocation_id = str(uuid.uuid4())
        result = await invocation_request_native(
            invocation_id, function.function_id, list(inputs), dict(trigger_metadata)
        )
        ok, return_value, _outputs, error, _traceback = result
        if not ok:
            raise InvocationFailedError(f"{function.name}: {error}")
        return Invocation(return_value)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop ``async def`` functions run on."""
        return self._loop

    def run_coroutine(self, coroutine: Coroutine[Any, Any, _T], *, timeout: float | None = None) -> _T:
        """Run ``coroutine`` on the worker's event loop and wait for its result.

        Also a hook for tests and ``make run`` to prepare or release state on the loop the
        functions use (e.g. closing an ``aio`` client before the process exits).

        Raises:
            RuntimeError: the worker is closed.
            TimeoutError: ``timeout`` seconds passed (the coroutine is cancelled).
        """
        if self._closed:
            coroutine.close()
            raise RuntimeError("the worker is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        """Cancel leftover tasks and stop the event loop. Idempotent; the worker cannot be reused."""
        with self._lock:
            if self._closed:
                return
            try:
                self.run_coroutine(_drain(), timeout=_CLOSE_TIMEOUT_S)
            except Exception:
                logger.warning("the worker's event loop did not shut down cleanly", exc_info=True)
            self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_CLOSE_TIMEOUT_S)
        runtime.stop_threadpool_executor()


def _registered_as_async(function_id: str) -> bool:
    """What the runtime's registry says about the function (``FunctionInfo.is_async``)."""
    info = runtime_registry.get_function(function_id)
    return bool(info is not None and info.is_async)


async def _drain() -> None:
    """Cancel the loop's other tasks and shut down its async generators and executor."""
    loop = asyncio.get_running_loop()
    tasks = [task for task in asyncio.all_tasks(loop) if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()


_worker: Worker | None = None
_worker_lock = threading.Lock()


def load_worker(app_dir: str | Path) -> Worker:
    """The process's worker for the app in ``app_dir``, indexed on first use.

    Raises:
        IndexingError: the runtime refused the app.
        RuntimeError: a worker for another directory was already loaded (one app per process).
    """
    global _worker
    directory = Path(app_dir).resolve()
    with _worker_lock:
        if _worker is None:
            worker = Worker(directory)
            try:
                worker.index()
            except BaseException:
                worker.close()
                raise
            _worker = worker
        elif _worker.app_dir != directory:
            raise RuntimeError(f"this process already runs the app in {_worker.app_dir}; one app per process")
        return _worker
