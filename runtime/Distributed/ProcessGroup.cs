using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// The ranks of a data-parallel job and their collectives over Gloo (torch.distributed's ProcessGroupGloo, in
/// small): all-reduce (sum, average, min, max) and broadcast in place, all-gather, barrier, and the differentiable
/// all-gather and all-reduce the contrastive losses take. Rendezvous follows torchrun: rank 0 hosts a key-value
/// store at MASTER_ADDR:MASTER_PORT through which every rank's Gloo address is exchanged; then the ranks form a full
/// TCP mesh.
/// <para>
/// Every collective has a timeout (<see cref="Timeout"/>); a failure (a rank died, a timeout) becomes a
/// <see cref="DistributedException"/> that names the dead rank when the store saw its connection close, and the
/// group stays failed: every later call throws the same error. Tensors may live anywhere and have any layout:
/// CPU contiguous tensors are reduced in place, others through a contiguous host copy. Collectives must be called
/// in the same order on every rank, from one thread.
/// </para>
/// </summary>
public sealed class ProcessGroup : IDisposable
{
    /// <summary>Environment variable: seconds a collective or the rendezvous may take (default 300).</summary>
    public const string TimeoutVariable = "MEDFORMER_DIST_TIMEOUT";

    readonly StoreServer? server;
    readonly StoreClient store;
    GCHandle storeHandle;
    IntPtr handle;
    uint tag;
    DistributedException? failure;

    ProcessGroup(DistributedEnvironment environment, TimeSpan timeout)
    {
        Environment = environment;
        Timeout = timeout;
        if (GlooNative.LoadError() is { } reason) throw new DistributedException($"data parallel needs Gloo: {reason}");
        byte[] secret = StoreSecret.Resolve(environment.IsLoopback);
        if (environment.Rank == 0) server = new StoreServer(StoreServer.BindAddress(environment.MasterAddress), environment.MasterPort, secret,
            environment.WorldSize);
        try
        {
            // Rank 0 reaches its own store where it listens: 0.0.0.0 (MASTER_ADDR=0.0.0.0) is not an address to connect to.
            string host = server is null ? environment.MasterAddress
                : server.EndPoint.Address.Equals(IPAddress.Any) ? "127.0.0.1"
                : server.EndPoint.Address.Equals(IPAddress.IPv6Any) ? "::1"
                : server.EndPoint.Address.ToString();
            store = new StoreClient(host, environment.MasterPort, environment.Rank, environment.WorldSize, secret, timeout);
            storeHandle = GCHandle.Alloc(store);
            string iface = System.Environment.GetEnvironmentVariable("GLOO_SOCKET_IFNAME") ?? "";
            string hostname = environment.IsLoopback ? "127.0.0.1" : AddressTowards(environment.MasterAddress, environment.MasterPort);
            var (status, message, connected) = GlooNative.Connect(environment.Rank, environment.WorldSize, hostname, iface, Milliseconds(timeout), storeHandle);
            if (status != GlooNative.Status.Ok)
            {
                string detail = store.LastError is { } inner ? inner.Message : message;
                throw Failure("rendezvous", detail, store.LastError);
            }
            handle = connected;
        }
        catch
        {
            if (storeHandle.IsAllocated) storeHandle.Free();
            store?.Dispose();
            server?.Dispose();
            throw;
        }
    }

    public DistributedEnvironment Environment { get; }
    public int Rank => Environment.Rank;
    public int WorldSize => Environment.WorldSize;
    public int LocalRank => Environment.LocalRank;

    /// <summary>How long one collective may take before it fails.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Time spent inside collectives so far (for the fraction of a step spent communicating).</summary>
    public TimeSpan CommunicationTime => communication.Elapsed;
    readonly Stopwatch communication = new();

    public static TimeSpan DefaultTimeout
    {
        get
        {
            string? text = System.Environment.GetEnvironmentVariable(TimeoutVariable);
            if (text is null) return TimeSpan.FromSeconds(300);
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) || !(seconds > 0))
                throw new ArgumentException($"{TimeoutVariable}={text} is not a positive number of seconds");
            return TimeSpan.FromSeconds(seconds);
        }
    }

    /// <summary>Joins the job the environment describes (torchrun's or Slurm's variables); null for a single process.</summary>
    public static ProcessGroup? FromEnvironment(TimeSpan? timeout = null) =>
        DistributedEnvironment.Detect() is { } environment ? Connect(environment, timeout) : null;

    public static ProcessGroup Connect(DistributedEnvironment environment, TimeSpan? timeout = null)
    {
        TorchRuntime.EnsureLoaded();
        return new ProcessGroup(environment, timeout ?? DefaultTimeout);
    }

    /// <summary>Sums, averages, or takes the minimum or maximum of <paramref name="tensor"/> over ranks, in place.</summary>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        if (op == ReduceOp.Average && !tensor.is_floating_point())
            throw new ArgumentException($"all_reduce: Average needs a floating-point tensor, not {tensor.dtype}");
        var wire = tensor.dtype switch
        {
            ScalarType.Float32 or ScalarType.Float64 or ScalarType.Int32 or ScalarType.Int64 or ScalarType.Byte => tensor.dtype,
            ScalarType.Bool when op is ReduceOp.Min or ReduceOp.Max => ScalarType.Byte,
            ScalarType.Float16 or ScalarType.BFloat16 => ScalarType.Float32,   // Gloo 0.5 has no bf16: reduce in fp32
            _ => throw new ArgumentException($"all_reduce: {tensor.dtype} is not supported (float32/64, bf16, fp16, int32/64, uint8; bool with min or max)"),
        };
        var nativeOp = op == ReduceOp.Average ? ReduceOp.Sum : op;
        Staged(tensor, wire, (data, count) =>
            Check("all_reduce", GlooNative.AllReduce(handle, data, count, TypeOf(wire), nativeOp, Milliseconds(Timeout), NextTag())));
        if (op == ReduceOp.Average)
            using (no_grad())
                tensor.div_(WorldSize);
    }

    /// <summary>Copies rank <paramref name="root"/>'s <paramref name="tensor"/> into every rank's, in place.</summary>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        if (root < 0 || root >= WorldSize) throw new ArgumentOutOfRangeException(nameof(root), root, $"broadcast: root must be a rank below {WorldSize}");
        Staged(tensor, tensor.dtype, (data, count) =>
            Check("broadcast", GlooNative.Broadcast(handle, data, count * tensor.ElementSize, root, Milliseconds(Timeout), NextTag())));
    }

    /// <summary>Every rank's <paramref name="tensor"/> concatenated along dimension 0 in rank order ([W·N, …]); all must have the same shape.</summary>
    public Tensor AllGather(Tensor tensor)
    {
        if (tensor.dim() == 0) throw new ArgumentException("all_gather: a 0-dim tensor has no dimension 0 to concatenate along");
        using var scope = NewDisposeScope();
        var input = tensor.detach().to(CPU).contiguous();
        var output = empty([WorldSize * input.shape[0], .. input.shape.Skip(1)], dtype: input.dtype);
        long bytes = input.numel() * input.ElementSize;
        if (bytes > 0)
        {
            Begin();
            try
            {
                unsafe
                {
                    fixed (byte* source = input.bytes)
                    fixed (byte* target = output.bytes)
                        Check("all_gather", GlooNative.AllGather(handle, source, target, bytes, Milliseconds(Timeout), NextTag()));
                }
            }
            finally
            {
                communication.Stop();
            }
        }
        else Barrier();
        return scope.MoveToOuter(output.to(tensor.device));
    }

    /// <summary>
    /// <see cref="AllGather"/> with gradient (torch.distributed.nn.functional.all_gather): the backward sums the
    /// gathered rows' gradients over ranks and returns this rank's block.
    /// </summary>
    public Tensor AllGatherWithGradient(Tensor tensor) => AllGatherFunction.apply(tensor, this);

    /// <summary>A sum over ranks with gradient (torch.distributed.nn.functional.all_reduce): the backward sums the gradients over ranks.</summary>
    public Tensor AllReduceSumWithGradient(Tensor tensor) => AllReduceSumFunction.apply(tensor, this);

    /// <summary>Waits until every rank has arrived.</summary>
    public void Barrier()
    {
        Begin();
        try
        {
            Check("barrier", GlooNative.Barrier(handle, Milliseconds(Timeout), NextTag()));
        }
        finally
        {
            communication.Stop();
        }
    }

    /// <summary>Throws the group's failure, if a collective failed where it could not throw (inside a backward pass).</summary>
    public void ThrowIfFailed()
    {
        if (failure is not null) throw new DistributedException(failure.Message, failure, failure.DeadRanks);
    }

    internal void Fail(Exception e) => failure ??= e as DistributedException ?? new DistributedException($"rank {Rank}: {e.Message}", e);

    /// <summary>Leaves without the goodbye: the other ranks' next collective fails naming this rank. For a process that is failing.</summary>
    public void Abort()
    {
        failure ??= new DistributedException($"rank {Rank}: the process group was aborted");
        Dispose();
    }

    /// <summary>Leaves the job. After a clean run the store hears a goodbye; after a failure it does not, so the others learn this rank died.</summary>
    public void Dispose()
    {
        if (handle != IntPtr.Zero)
        {
            GlooNative.Close(handle);
            handle = IntPtr.Zero;
        }
        // Goodbye only after a clean run: a rank that fails leaves without one, so the others learn it died.
        if (failure is null) store.Dispose();
        if (storeHandle.IsAllocated) storeHandle.Free();
        server?.Dispose();
    }

    unsafe void Staged(Tensor tensor, ScalarType wire, Action<IntPtr, long> body)
    {
        ThrowIfFailed();
        ObjectDisposedException.ThrowIf(handle == IntPtr.Zero, this);
        long count = tensor.numel();
        if (count == 0) return;
        bool direct = tensor.device_type == DeviceType.CPU && tensor.is_contiguous() && tensor.dtype == wire;
        using var scope = NewDisposeScope();
        var buffer = direct ? tensor : tensor.detach().to(CPU).to(wire).contiguous();
        Begin();
        try
        {
            fixed (byte* data = buffer.bytes)
                body((IntPtr)data, count);
        }
        finally
        {
            communication.Stop();
        }
        if (!direct)
            using (no_grad())
                tensor.copy_(buffer);
    }

    void Begin()
    {
        ThrowIfFailed();
        ObjectDisposedException.ThrowIf(handle == IntPtr.Zero, this);
        communication.Start();
    }

    void Check(string op, (GlooNative.Status Status, string Message) result)
    {
        if (result.Status == GlooNative.Status.Ok) return;
        var error = Failure(op, result.Message);
        failure = error;
        throw error;
    }

    /// <summary>A failure's message: which rank died (asked of the store), or that one did not arrive in time.</summary>
    DistributedException Failure(string op, string message, Exception? inner = null)
    {
        string who;
        int[] dead = [];
        try
        {
            dead = store.DeadRanks(TimeSpan.FromSeconds(3));
            who = dead.Length > 0
                ? $"rank {string.Join(", ", dead)} died (its connection closed)"
                : $"no rank died, but one did not take part within the timeout ({Timeout.TotalSeconds:F0} s, {TimeoutVariable}) or the network failed";
        }
        catch (StoreLostException)
        {
            dead = [0];
            who = $"rank 0 died (its rendezvous store at {Environment.MasterAddress}:{Environment.MasterPort} is gone)";
        }
        return new DistributedException($"rank {Rank} of {WorldSize}: {op} failed: {who}. Gloo: {message.Trim()}", inner, dead);
    }

    /// <summary>
    /// This machine's address on the route to rank 0, which the other ranks can reach (a hostname can resolve to
    /// 127.0.1.1 on Debian); GLOO_SOCKET_IFNAME overrides it. A UDP connect sends nothing.
    /// </summary>
    static string AddressTowards(string host, int port)
    {
        try
        {
            using var socket = new Socket(SocketType.Dgram, ProtocolType.Udp);
            socket.Connect(host, port);
            var address = ((IPEndPoint)socket.LocalEndPoint!).Address;
            return (address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).ToString();
        }
        catch (SocketException)
        {
            return Dns.GetHostName();
        }
    }

    uint NextTag() => unchecked(tag++);

    static long Milliseconds(TimeSpan span) => (long)Math.Ceiling(span.TotalMilliseconds);

    static GlooNative.DataType TypeOf(ScalarType type) => type switch
    {
        ScalarType.Float32 => GlooNative.DataType.Float32,
        ScalarType.Float64 => GlooNative.DataType.Float64,
        ScalarType.Int32 => GlooNative.DataType.Int32,
        ScalarType.Int64 => GlooNative.DataType.Int64,
        _ => GlooNative.DataType.UInt8,
    };

    public override string ToString() =>
        $"rank {Rank} of {WorldSize} (local rank {LocalRank}, rendezvous {Environment.MasterAddress}:{Environment.MasterPort}, {Environment.Source})";

    sealed class AllGatherFunction : autograd.SingleTensorFunction<AllGatherFunction>
    {
        public override string Name => nameof(AllGatherFunction);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (input, group) = ((Tensor)vars[0], (ProcessGroup)vars[1]);
            ctx.save_data("group", group);
            ctx.save_data("rows", input.shape[0]);
            return group.AllGather(input);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            var group = (ProcessGroup)ctx.get_data("group");
            long rows = (long)ctx.get_data("rows");
            return [Reduced(group, grad).narrow(0, group.Rank * rows, rows).contiguous(), null!];
        }
    }

    sealed class AllReduceSumFunction : autograd.SingleTensorFunction<AllReduceSumFunction>
    {
        public override string Name => nameof(AllReduceSumFunction);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (input, group) = ((Tensor)vars[0], (ProcessGroup)vars[1]);
            ctx.save_data("group", group);
            var sum = input.detach().clone();
            group.AllReduce(sum);
            return sum;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad) => [Reduced((ProcessGroup)ctx.get_data("group"), grad), null!];
    }

    /// <summary>
    /// The gradient summed over ranks. A backward runs inside libtorch, where an exception would end the process:
    /// a failure is kept on the group (<see cref="ThrowIfFailed"/>) and the gradient comes back as zeros.
    /// </summary>
    static Tensor Reduced(ProcessGroup group, Tensor grad)
    {
        var sum = grad.clone();
        try
        {
            group.AllReduce(sum);
        }
        catch (Exception e)
        {
            group.Fail(e);
            sum.zero_();
        }
        return sum;
    }
}
