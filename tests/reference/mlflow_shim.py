import importlib.abc, importlib.machinery, sys, types

STUBBED = ("opentelemetry", "fastapi", "databricks")

class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"): raise AttributeError(name)
        return _Stub
    def __getitem__(cls, item): return _Stub
    def __or__(cls, other): return _Stub
    def __ror__(cls, other): return _Stub

class _Stub(metaclass=_StubMeta):
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return _Stub()
    def __getattr__(self, name):
        if name.startswith("__"): raise AttributeError(name)
        return _Stub()

class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"): raise AttributeError(name)
        return _Stub

class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None
    def create_module(self, spec): return _StubModule(spec.name)
    def exec_module(self, module): module.__path__ = []

sys.meta_path.insert(0, _Finder())

def _register_otel_trace_proto():
    # service.proto imports OpenTelemetry's trace.proto for the trace API only; a Span message with no fields lets
    # the descriptor pool build while nothing here reads spans.
    from google.protobuf import descriptor_pb2, descriptor_pool
    f = descriptor_pb2.FileDescriptorProto(name="opentelemetry/proto/trace/v1/trace.proto", package="opentelemetry.proto.trace.v1", syntax="proto3")
    f.message_type.add(name="Span")
    descriptor_pool.Default().Add(f)

_register_otel_trace_proto()

import cachetools, cachetools.func
if not hasattr(cachetools.func, "cached"):
    cachetools.func.cached = cachetools.cached   # newer cachetools has it there; Debian 12's 5.3 only at the top

import importlib.metadata, importlib.util, re

_version = importlib.metadata.version


def _mlflow_version(name):
    # MLflow run from its source tree has no installed metadata, and takes itself for the tracing-only SDK (no
    # MlflowClient) unless the "mlflow" package answers; it answers with the tree's own version.
    if name == "mlflow":
        spec = importlib.util.find_spec("mlflow")
        source = open(f"{spec.submodule_search_locations[0]}/version.py").read()
        return re.search(r'VERSION = "([^"]+)"', source).group(1)
    return _version(name)


importlib.metadata.version = _mlflow_version
