using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// The precision policy. TorchSharp has no autocast, and casting activations and weights per op costs most of
/// what bf16 gains, so this works as Apex's O2 and Lightning's "bf16-mixed" do: the model itself runs in the
/// compute dtype (activations flow in it with no per-op casts), except normalisation layers, whose parameters stay
/// fp32 (libtorch's norm kernels take low-precision input with fp32 parameters and accumulate in fp32, as its
/// softmax and attention kernels do). The optimizer works on fp32 master copies of the converted parameters;
/// losses are computed in fp32. For fp32 the policy is a pass-through with the same step protocol:
/// <code>
/// var loss = policy.Loss(model.forward(policy.Cast(x)), y, mse_loss);   // fp32 loss
/// policy.Backward(loss);                                                 // scaled for fp16
/// policy.UnscaleGradients();                                             // fp32 master grads, unscaled
/// clip_grad_norm_(policy.MasterParameters, 1.0);
/// policy.Step(optimizer);                                                // skipped on overflow
/// policy.ZeroGrad(optimizer);
/// </code>
/// </summary>
public sealed class MixedPrecision : IDisposable
{
    readonly nn.Module model;
    readonly List<(string Name, Parameter Model, Parameter Master)> converted = [];
    readonly List<Parameter> masters = [];
    bool unscaled;
    bool finite = true;

    public Precision Requested { get; }
    public Precision Effective { get; }
    public ScalarType ComputeType { get; }
    /// <summary>fp16 only.</summary>
    public GradScaler? Scaler { get; }
    /// <summary>What the optimizer is built over: fp32 masters of converted parameters, and the fp32 ones as they are.</summary>
    public IReadOnlyList<Parameter> MasterParameters => masters;
    /// <summary>The masters by the model's parameter names (what a checkpoint stores: fp32 whatever the compute dtype).</summary>
    public IEnumerable<(string Name, Parameter Master)> NamedMasterParameters =>
        model.named_parameters().Select(p => p.name).Zip(masters, (name, master) => (name, master));
    public long SkippedSteps { get; private set; }

    MixedPrecision(nn.Module model, Precision requested, Precision effective, GradScaler? scaler)
    {
        this.model = model;
        Requested = requested;
        Effective = effective;
        ComputeType = effective switch { Precision.Bf16 => ScalarType.BFloat16, Precision.Fp16 => ScalarType.Float16, _ => ScalarType.Float32 };
        Scaler = scaler;
    }

    /// <summary>
    /// The precision a run on <paramref name="device"/> actually uses when <paramref name="requested"/> is asked for,
    /// and the notice that says why when they differ: bf16 on a CPU without AVX512-BF16 or AMX runs in fp32 (emulated
    /// bf16 is slower than fp32). fp16 needs a GPU. What the CLI records (MLflow params, the final line) comes from
    /// here, before any training, so the record says what ran.
    /// </summary>
    public static (Precision Effective, string? Notice) Resolve(Precision requested, Device device, bool? cpuHasFastBf16 = null)
    {
        bool fastBf16 = cpuHasFastBf16 ?? CpuFeatures.HasFastBf16;
        if (requested == Precision.Fp16 && device.type == DeviceType.CPU)
            throw new ArgumentException("--precision fp16 needs a CUDA device: libtorch's CPU fp16 matmuls are slower than fp32. On this CPU use "
                + (fastBf16 ? "bf16 (or fp32)." : "fp32 (it lacks AVX512-BF16 and AMX, so bf16 would run in fp32 too)."));
        if (requested == Precision.Bf16 && device.type == DeviceType.CPU && !fastBf16)
            return (Precision.Fp32, "--precision bf16: this CPU has neither AVX512-BF16 nor AMX, where bf16 runs slower than fp32; training in fp32.");
        return (requested, null);
    }

    /// <summary>
    /// Applies the policy to <paramref name="model"/> (already on <paramref name="device"/>), in the precision
    /// <see cref="Resolve"/> gives (with its notice).
    /// </summary>
    public static MixedPrecision Create(nn.Module model, Precision precision, Device device, Action<string>? notice = null, bool? cpuHasFastBf16 = null)
    {
        if (!model.parameters().Any())
            throw new ArgumentException($"the precision policy was given a {model.GetType().Name} with no registered parameters (a " +
                "container that did not register its modules?)");
        var (effective, why) = Resolve(precision, device, cpuHasFastBf16);
        if (why is not null) notice?.Invoke(why);
        var policy = new MixedPrecision(model, precision, effective, effective == Precision.Fp16 ? new GradScaler() : null);
        policy.Apply();
        return policy;
    }

    void Apply()
    {
        if (Effective == Precision.Fp32)
        {
            masters.AddRange(model.parameters());
            return;
        }
        var fp32Names = NormParameterNames(model);
        var keep = new Dictionary<string, Tensor>();
        using (torch.no_grad())
        {
            foreach (var (name, parameter) in model.named_parameters())
                if (!fp32Names.Contains(name) && parameter.is_floating_point())
                    keep[name] = parameter.detach().to(ScalarType.Float32, copy: true);
            model.to(ComputeType);
            foreach (var (_, module) in model.named_modules())
                if (IsNorm(module)) module.to(ScalarType.Float32);
        }
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (keep.Remove(name, out var value))
            {
                var master = new Parameter(value, requires_grad: parameter.requires_grad);
                converted.Add((name, parameter, master));
                masters.Add(master);
            }
            else
            {
                masters.Add(parameter);
            }
        }
    }

    static HashSet<string> NormParameterNames(nn.Module model)
    {
        var names = new HashSet<string>();
        foreach (var (prefix, module) in model.named_modules())
            if (IsNorm(module))
                foreach (var (name, _) in module.named_parameters())
                    names.Add(prefix.Length == 0 ? name : prefix + "." + name);
        return names;
    }

    static bool IsNorm(nn.Module module) => module is LayerNorm or GroupNorm or BatchNorm1d or BatchNorm2d or BatchNorm3d
        or InstanceNorm1d or InstanceNorm2d or InstanceNorm3d or LocalResponseNorm;

    /// <summary>A floating-point input in the compute dtype (integer tensors pass unchanged).</summary>
    public Tensor Cast(Tensor input) => input.is_floating_point() && input.dtype != ComputeType ? input.to(ComputeType) : input.alias();

    /// <summary>A loss computed in fp32 from a low-precision output.</summary>
    public static Tensor Loss(Tensor output, Tensor target, Func<Tensor, Tensor, Tensor> loss)
    {
        using var scope = NewDisposeScope();
        var value = loss(output.to(ScalarType.Float32), target.to(ScalarType.Float32));
        return scope.MoveToOuter(value);
    }

    /// <summary>backward() of the loss, scaled for fp16.</summary>
    public void Backward(Tensor loss)
    {
        if (Scaler is null)
        {
            loss.backward();
            return;
        }
        using var scaled = loss * Scaler.Scale;
        scaled.backward();
    }

    /// <summary>
    /// Moves the gradients into the fp32 masters and divides out the loss scale; returns whether every gradient is
    /// finite. Call it before clipping the masters' gradients; <see cref="Step"/> calls it if you did not.
    /// </summary>
    public bool UnscaleGradients()
    {
        if (unscaled) return finite;
        unscaled = true;
        using var scope = NewDisposeScope();
        using (torch.no_grad())
        {
            foreach (var (_, source, master) in converted)
            {
                var grad = source.grad;
                if (grad is null) continue;
                var target = master.grad;
                if (target is null)
                {
                    master.grad = grad.to(ScalarType.Float32);
                }
                else
                {
                    target.copy_(grad);
                }
            }
            if (Scaler is null)
            {
                finite = true;  // bf16 has fp32's range: overflow is not the failure mode the scaler guards
                return finite;
            }
            var nonFinite = zeros(1, dtype: ScalarType.Int64, device: masters.Count > 0 ? masters[0].device : CPU);
            double inverse = 1.0 / Scaler.Scale;
            foreach (var master in masters)
            {
                var grad = master.grad;
                if (grad is null) continue;
                grad.mul_(inverse);
                nonFinite.add_(grad.isfinite().logical_not().any().to(ScalarType.Int64));
            }
            finite = nonFinite.item<long>() == 0;
        }
        return finite;
    }

    /// <summary>
    /// optimizer.step() on the masters unless a gradient overflowed (then skipped and counted), then the masters are
    /// copied back into the model. Returns whether the step was taken.
    /// </summary>
    public bool Step(optim.Optimizer optimizer)
    {
        bool ok = UnscaleGradients();
        unscaled = false;
        Scaler?.Update(ok);
        if (!ok)
        {
            SkippedSteps++;
            return false;
        }
        optimizer.step();
        using (torch.no_grad())
            foreach (var (_, target, master) in converted)
                target.copy_(master);
        return true;
    }

    /// <summary>Copies the fp32 masters into the model's own (compute-dtype) parameters, after the masters were loaded from a checkpoint.</summary>
    public void SyncModelFromMasters()
    {
        using var noGrad = torch.no_grad();
        foreach (var (_, target, master) in converted) target.copy_(master);
    }

    /// <summary>Clears the masters' gradients (through the optimizer) and the model's.</summary>
    public void ZeroGrad(optim.Optimizer optimizer)
    {
        optimizer.zero_grad();
        if (converted.Count > 0) model.zero_grad();
        unscaled = false;
    }

    public void Dispose()
    {
        foreach (var (_, _, master) in converted) master.Dispose();
        converted.Clear();
        masters.Clear();
    }
}
