using Mono.Cecil;
using Mono.Cecil.Cil;
using Mono.Cecil.Rocks;

namespace Medformer.KeepAlive;

/// <summary>
/// Makes every native call in TorchSharp safe from the finalizers of the objects whose handles it passes.
///
/// TorchSharp's wrappers read <c>Handle</c> from a Scalar or Tensor and call libtorch with the bare pointer; nothing
/// uses the object after the call, so the JIT may treat it as dead and a collection on another thread can run its
/// finalizer (which frees the native object) while libtorch still reads it. <c>t * 0.5</c> makes such a Scalar, and
/// so do TorchSharp's own literals (<c>add(t)</c> is <c>add(t, 1)</c>; AdamW makes about nine per parameter per step).
///
/// The fix is the one the .NET guidelines give for handles passed as IntPtr: <c>GC.KeepAlive</c> after the call. In
/// every method that calls a P/Invoke, this rewriter
///   1. stores each object whose <c>Handle</c> the method reads into a new local, so temporaries such as
///      <c>x.ToScalar().Handle</c> are named, and
///   2. after each P/Invoke call, passes <c>this</c>, every reference-typed argument and every reference-typed local
///      to <c>GC.KeepAlive</c>, which keeps them reachable until the native call has returned.
/// KeepAlive is a JIT intrinsic that emits no code: the rewrite changes lifetimes only, never results or speed.
/// </summary>
public sealed class KeepAliveRewriter
{
    public const string MarkerKey = "Medformer.KeepAlive";
    public const string MarkerVersion = "1";

    readonly ModuleDefinition module;
    readonly MethodReference keepAlive;

    public int Methods { get; private set; }
    public int NativeCalls { get; private set; }
    public int HandleReads { get; private set; }

    public KeepAliveRewriter(ModuleDefinition module)
    {
        this.module = module;
        var runtime = module.AssemblyReferences.FirstOrDefault(a => a.Name == "System.Runtime")
            ?? throw new InvalidOperationException($"{module.FileName} does not reference System.Runtime; not a .NET (Core) build of TorchSharp.");
        var gc = new TypeReference("System", "GC", module, runtime);
        keepAlive = new MethodReference("KeepAlive", module.TypeSystem.Void, gc) { HasThis = false };
        keepAlive.Parameters.Add(new ParameterDefinition(module.TypeSystem.Object));
    }

    /// <summary>True when the assembly was already rewritten (by this version of the rewriter).</summary>
    public static string? Marker(AssemblyDefinition assembly) =>
        assembly.CustomAttributes
            .Where(a => a.AttributeType.FullName == "System.Reflection.AssemblyMetadataAttribute" && a.ConstructorArguments.Count == 2)
            .Where(a => (string)a.ConstructorArguments[0].Value == MarkerKey)
            .Select(a => (string)a.ConstructorArguments[1].Value)
            .FirstOrDefault();

    public void Rewrite()
    {
        foreach (var type in AllTypes(module.Types))
            foreach (var method in type.Methods)
                if (method.HasBody && CallsNative(method)) Rewrite(method);
        Mark();
    }

    static IEnumerable<TypeDefinition> AllTypes(IEnumerable<TypeDefinition> types)
    {
        foreach (var type in types)
        {
            yield return type;
            foreach (var nested in AllTypes(type.NestedTypes)) yield return nested;
        }
    }

    static bool CallsNative(MethodDefinition method) => method.Body.Instructions.Any(IsNativeCall);

    static bool IsNativeCall(Instruction instruction) =>
        instruction.OpCode == OpCodes.Call && instruction.Operand is MethodReference callee && Resolve(callee) is { IsPInvokeImpl: true };

    static MethodDefinition? Resolve(MethodReference method)
    {
        if (method is MethodDefinition definition) return definition;
        try { return method.Resolve(); }
        catch (AssemblyResolutionException) { return null; }
    }

    void Rewrite(MethodDefinition method)
    {
        var body = method.Body;
        body.SimplifyMacros();  // long branch forms: the inserted instructions may push a target out of a short one's reach
        var il = body.GetILProcessor();
        NameHandleOwners(body, il);
        var keep = KeptValues(method);
        foreach (var call in body.Instructions.Where(IsNativeCall).ToList())
        {
            var at = call;
            foreach (var load in keep)
            {
                var loadInstruction = load();
                il.InsertAfter(at, loadInstruction);
                var keepCall = il.Create(OpCodes.Call, keepAlive);
                il.InsertAfter(loadInstruction, keepCall);
                at = keepCall;
            }
            NativeCalls++;
        }
        body.InitLocals = true;  // the new locals are read by KeepAlive on every path; they start as null
        body.OptimizeMacros();
        Methods++;
    }

    // Before each `callvirt/call get_Handle` on a class: `dup; stloc tmp`, so the object outlives the read.
    void NameHandleOwners(MethodBody body, ILProcessor il)
    {
        foreach (var read in body.Instructions.Where(IsHandleRead).ToList())
        {
            if (read.Previous is { OpCode.OpCodeType: OpCodeType.Prefix }) continue;  // constrained. / readonly.
            var owner = new VariableDefinition(module.TypeSystem.Object);
            body.Variables.Add(owner);
            var dup = il.Create(OpCodes.Dup);
            il.InsertBefore(read, dup);
            il.InsertAfter(dup, il.Create(OpCodes.Stloc, owner));
            Retarget(body, read, dup);
            HandleReads++;
        }
    }

    static bool IsHandleRead(Instruction instruction) =>
        (instruction.OpCode == OpCodes.Call || instruction.OpCode == OpCodes.Callvirt)
        && instruction.Operand is MethodReference { Name: "get_Handle", HasThis: true } getter
        && getter.Parameters.Count == 0
        && !getter.DeclaringType.IsValueType
        && ResolveType(getter.DeclaringType) is { IsValueType: false };

    static TypeDefinition? ResolveType(TypeReference type)
    {
        try { return type.Resolve(); }
        catch (AssemblyResolutionException) { return null; }
    }

    // Branches and handlers that led to `from` lead to `to`, so no path skips the inserted instructions.
    static void Retarget(MethodBody body, Instruction from, Instruction to)
    {
        foreach (var instruction in body.Instructions)
        {
            if (instruction.Operand == from) instruction.Operand = to;
            else if (instruction.Operand is Instruction[] targets)
                for (int i = 0; i < targets.Length; i++)
                    if (targets[i] == from) targets[i] = to;
        }
        foreach (var handler in body.ExceptionHandlers)
        {
            if (handler.TryStart == from) handler.TryStart = to;
            if (handler.TryEnd == from) handler.TryEnd = to;
            if (handler.HandlerStart == from) handler.HandlerStart = to;
            if (handler.HandlerEnd == from) handler.HandlerEnd = to;
            if (handler.FilterStart == from) handler.FilterStart = to;
        }
    }

    // `this`, reference-typed arguments and locals: each as a factory of the instruction that loads it.
    List<Func<Instruction>> KeptValues(MethodDefinition method)
    {
        var loads = new List<Func<Instruction>>();
        if (method.HasThis && !method.DeclaringType.IsValueType)
            loads.Add(() => Instruction.Create(OpCodes.Ldarg_0));
        foreach (var parameter in method.Parameters)
            if (IsObject(parameter.ParameterType))
                loads.Add(() => Instruction.Create(OpCodes.Ldarg, parameter));
        foreach (var variable in method.Body.Variables)
            if (IsObject(variable.VariableType))
                loads.Add(() => Instruction.Create(OpCodes.Ldloc, variable));
        return loads;
    }

    static bool IsObject(TypeReference type) =>
        !type.IsValueType && !type.IsByReference && !type.IsPointer && !type.IsPinned && !type.IsGenericParameter
        && !type.IsFunctionPointer && type.MetadataType != MetadataType.Void && !IsValueTypeDefinition(type);

    static bool IsValueTypeDefinition(TypeReference type) =>
        type is not ArrayType && type.MetadataType is MetadataType.Class or MetadataType.GenericInstance
        && ResolveType(type) is { IsValueType: true };

    void Mark()
    {
        var runtime = module.AssemblyReferences.First(a => a.Name == "System.Runtime");
        var attribute = new TypeReference("System.Reflection", "AssemblyMetadataAttribute", module, runtime);
        var ctor = new MethodReference(".ctor", module.TypeSystem.Void, attribute) { HasThis = true };
        ctor.Parameters.Add(new ParameterDefinition(module.TypeSystem.String));
        ctor.Parameters.Add(new ParameterDefinition(module.TypeSystem.String));
        var mark = new CustomAttribute(ctor);
        mark.ConstructorArguments.Add(new CustomAttributeArgument(module.TypeSystem.String, MarkerKey));
        mark.ConstructorArguments.Add(new CustomAttributeArgument(module.TypeSystem.String,
            $"{MarkerVersion}; {NativeCalls} native calls in {Methods} methods"));
        module.Assembly.CustomAttributes.Add(mark);
    }
}
