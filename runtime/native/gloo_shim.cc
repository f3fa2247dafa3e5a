// A C face on Gloo (Debian's libgloo) for Medformer.Runtime's ProcessGroup: a full-mesh TCP context whose
// rendezvous goes through a key-value store implemented in C# (callbacks), and the collectives the trainer uses,
// each with a timeout. Every C++ exception stops here and comes back as a non-zero status and a message: a Gloo
// failure never terminates the process.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"

#define MFG_API __attribute__((visibility("default")))

extern "C" {
// The store's callbacks return 0 on success; anything else means the C# side failed (it keeps the exception).
typedef int (*mfg_store_set)(void* state, const char* key, const char* data, int64_t length);
// Fills at most capacity bytes and the value's whole length in *length (call again with a bigger buffer).
typedef int (*mfg_store_get)(void* state, const char* key, char* data, int64_t capacity, int64_t* length);
// keys: newline-separated.
typedef int (*mfg_store_wait)(void* state, const char* keys, int64_t timeout_ms);
}

namespace {

enum Status : int { kOk = 0, kGlooError = 1, kIoError = 2, kStoreError = 3, kArgumentError = 4, kOtherError = 5 };

class CallbackStore : public gloo::rendezvous::Store {
 public:
  CallbackStore(void* state, mfg_store_set set, mfg_store_get get, mfg_store_wait wait, int64_t timeout_ms)
      : state_(state), set_(set), get_(get), wait_(wait), timeout_ms_(timeout_ms) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    if (set_(state_, key.c_str(), data.data(), static_cast<int64_t>(data.size())) != 0) throw StoreFailure("set " + key);
  }

  std::vector<char> get(const std::string& key) override {
    wait({key});
    std::vector<char> data(256);
    int64_t length = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
      if (get_(state_, key.c_str(), data.data(), static_cast<int64_t>(data.size()), &length) != 0) throw StoreFailure("get " + key);
      if (length <= static_cast<int64_t>(data.size())) break;
      data.resize(static_cast<size_t>(length));
    }
    data.resize(static_cast<size_t>(length));
    return data;
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, std::chrono::milliseconds(timeout_ms_)); }

  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    std::string joined;
    for (const auto& key : keys) joined += key + "\n";
    if (wait_(state_, joined.c_str(), timeout.count()) != 0) throw StoreFailure("wait for " + joined);
  }

  struct StoreFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

 private:
  void* state_;
  mfg_store_set set_;
  mfg_store_get get_;
  mfg_store_wait wait_;
  int64_t timeout_ms_;
};

struct Group {
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
};

void Fill(char* error, int64_t capacity, const std::string& message) {
  if (error == nullptr || capacity <= 0) return;
  size_t n = std::min(message.size(), static_cast<size_t>(capacity - 1));
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

// Runs body, turning every exception into a status and a message.
template <typename F>
int Guard(char* error, int64_t capacity, F body) {
  try {
    body();
    return kOk;
  } catch (const CallbackStore::StoreFailure& e) {
    Fill(error, capacity, std::string("store: ") + e.what());
    return kStoreError;
  } catch (const gloo::IoException& e) {
    Fill(error, capacity, e.what());
    return kIoError;
  } catch (const gloo::Exception& e) {
    Fill(error, capacity, e.what());
    return kGlooError;
  } catch (const gloo::EnforceNotMet& e) {
    Fill(error, capacity, e.what());
    return kGlooError;
  } catch (const std::invalid_argument& e) {
    Fill(error, capacity, e.what());
    return kArgumentError;
  } catch (const std::exception& e) {
    Fill(error, capacity, e.what());
    return kOtherError;
  } catch (...) {
    Fill(error, capacity, "an unknown C++ exception");
    return kOtherError;
  }
}

// dtype codes, as Medformer.Runtime.Distributed.GlooNative.DataType.
enum DataType : int { kFloat32 = 0, kFloat64 = 1, kInt32 = 2, kInt64 = 3, kUInt8 = 4 };
enum ReduceOp : int { kSum = 0, kMin = 1, kMax = 2 };

// Element-wise c = a op b (Gloo's own gloo::sum indexes with an int, which overflows past 2^31 elements).
template <typename T, typename Op>
void Apply(void* c, const void* a, const void* b, size_t n) {
  T* out = static_cast<T*>(c);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; i++) out[i] = Op()(x[i], y[i]);
}

template <typename T>
struct Min {
  T operator()(T a, T b) const { return b < a ? b : a; }
};

template <typename T>
struct Max {
  T operator()(T a, T b) const { return a < b ? b : a; }
};

template <typename T>
gloo::AllreduceOptions::Func ReduceFunction(int op) {
  switch (op) {
    case kSum: return Apply<T, std::plus<T>>;
    case kMin: return Apply<T, Min<T>>;
    case kMax: return Apply<T, Max<T>>;
    default: throw std::invalid_argument("unknown reduce op " + std::to_string(op));
  }
}

template <typename T>
void AllReduce(Group* group, void* data, int64_t count, int op, int64_t timeout_ms, uint32_t tag) {
  gloo::AllreduceOptions options(group->context);
  options.setOutput(static_cast<T*>(data), static_cast<size_t>(count));
  options.setReduceFunction(ReduceFunction<T>(op));
  options.setTag(tag);
  options.setTimeout(std::chrono::milliseconds(timeout_ms));
  gloo::allreduce(options);
}

Group* Checked(void* handle) {
  if (handle == nullptr) throw std::invalid_argument("the process group is closed");
  return static_cast<Group*>(handle);
}

}  // namespace

extern "C" {

// Connects rank of size through the store. hostname (or iface, when not empty) picks the local address other
// ranks reach this one at.
MFG_API int mfg_connect(int rank, int size, const char* hostname, const char* iface, int64_t timeout_ms, void* state,
                mfg_store_set set, mfg_store_get get, mfg_store_wait wait, void** handle, char* error, int64_t capacity) {
  *handle = nullptr;
  return Guard(error, capacity, [&] {
    if (size < 1 || rank < 0 || rank >= size) throw std::invalid_argument("rank " + std::to_string(rank) + " of " + std::to_string(size));
    gloo::transport::tcp::attr attr;
    if (iface != nullptr && iface[0] != '\0') attr.iface = iface;
    else attr.hostname = hostname;
    auto group = std::make_unique<Group>();
    group->device = gloo::transport::tcp::CreateDevice(attr);
    group->context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    group->context->setTimeout(std::chrono::milliseconds(timeout_ms));
    CallbackStore store(state, set, get, wait, timeout_ms);
    group->context->connectFullMesh(store, group->device);
    *handle = group.release();
  });
}

MFG_API void mfg_close(void* handle) {
  try {
    delete static_cast<Group*>(handle);
  } catch (...) {
  }
}

MFG_API int mfg_allreduce(void* handle, void* data, int64_t count, int dtype, int op, int64_t timeout_ms, uint32_t tag, char* error, int64_t capacity) {
  return Guard(error, capacity, [&] {
    Group* group = Checked(handle);
    switch (dtype) {
      case kFloat32: AllReduce<float>(group, data, count, op, timeout_ms, tag); break;
      case kFloat64: AllReduce<double>(group, data, count, op, timeout_ms, tag); break;
      case kInt32: AllReduce<int32_t>(group, data, count, op, timeout_ms, tag); break;
      case kInt64: AllReduce<int64_t>(group, data, count, op, timeout_ms, tag); break;
      case kUInt8: AllReduce<uint8_t>(group, data, count, op, timeout_ms, tag); break;
      default: throw std::invalid_argument("unknown dtype " + std::to_string(dtype));
    }
  });
}

MFG_API int mfg_broadcast(void* handle, void* data, int64_t bytes, int root, int64_t timeout_ms, uint32_t tag, char* error, int64_t capacity) {
  return Guard(error, capacity, [&] {
    gloo::BroadcastOptions options(Checked(handle)->context);
    options.setOutput(static_cast<uint8_t*>(data), static_cast<size_t>(bytes));
    options.setRoot(root);
    options.setTag(tag);
    options.setTimeout(std::chrono::milliseconds(timeout_ms));
    gloo::broadcast(options);
  });
}

// output holds size × bytes: every rank's input in rank order.
MFG_API int mfg_allgather(void* handle, const void* input, void* output, int64_t bytes, int64_t timeout_ms, uint32_t tag, char* error, int64_t capacity) {
  return Guard(error, capacity, [&] {
    Group* group = Checked(handle);
    gloo::AllgatherOptions options(group->context);
    options.setInput(const_cast<uint8_t*>(static_cast<const uint8_t*>(input)), static_cast<size_t>(bytes));
    options.setOutput(static_cast<uint8_t*>(output), static_cast<size_t>(bytes) * group->context->size);
    options.setTag(tag);
    options.setTimeout(std::chrono::milliseconds(timeout_ms));
    gloo::allgather(options);
  });
}

MFG_API int mfg_barrier(void* handle, int64_t timeout_ms, uint32_t tag, char* error, int64_t capacity) {
  return Guard(error, capacity, [&] {
    gloo::BarrierOptions options(Checked(handle)->context);
    options.setTag(tag);
    options.setTimeout(std::chrono::milliseconds(timeout_ms));
    gloo::barrier(options);
  });
}

}  // extern "C"
