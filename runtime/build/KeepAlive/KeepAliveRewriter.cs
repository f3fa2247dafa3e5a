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
///      <c>x.ToScalar().Handle</c> are named,
///   2. turns each sequence of tensors that TorchSharp reads handles from (<c>ToHandleArray(IEnumerable&lt;Tensor&gt;)</c>,
///      behind <c>stack</c>, <c>cat</c>, <c>einsum</c> and about forty more) into an array held by a new local: a lazy
///      sequence such as <c>xs.Select(x =&gt; x * 2)</c> makes tensors that nothing else refers to once their handles are
///      read, and libtorch then retains freed tensors (a segfault, not an exception), and
///   3. after each P/Invoke call, passes <c>this</c>, every reference-typed argument and every reference-typed local
///      to <c>GC.KeepAlive</c>, which keeps them reachable until the native call has returned.
/// KeepAlive is a JIT intrinsic that emits no code: the rewrite changes lifetimes only, never results or speed.
/// </summary>
public sealed class KeepAliveRewriter
{
    public const string MarkerKey = "Medformer.KeepAlive";
    public const string MarkerVersion = "2";

    readonly ModuleDefinition module;
    readonly MethodReference keepAlive;

    public int Methods { get; private set; }
    public int NativeCalls { get; private set; }
    public int HandleReads { get; private set; }
    public int Sequences { get; private set; }
    public int Forwarders { get; private set; }

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
            {
                if (!method.HasBody) continue;
                if (CallsNative(method)) Rewrite(method);
                else if (method.Body.Instructions.Any(IsToHandles)) RewriteForwarder(method);
            }
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
        MaterialiseSequences(body, il);
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

    // `hstack(IList<Tensor> tensors) => hstack(tensors.ToHandleArray())`: the native call is in the method it forwards
    // the handles to, so the tensors are kept alive until this one returns.
    void RewriteForwarder(MethodDefinition method)
    {
        var body = method.Body;
        body.SimplifyMacros();
        var il = body.GetILProcessor();
        MaterialiseSequences(body, il);
        var keep = KeptValues(method);
        foreach (var ret in body.Instructions.Where(i => i.OpCode == OpCodes.Ret).ToList())
        {
            Instruction? first = null;
            foreach (var load in keep)
            {
                var loadInstruction = load();
                il.InsertBefore(ret, loadInstruction);
                il.InsertBefore(ret, il.Create(OpCodes.Call, keepAlive));
                first ??= loadInstruction;
            }
            if (first is not null) Retarget(body, ret, first);
        }
        body.InitLocals = true;
        body.OptimizeMacros();
        Forwarders++;
    }

    static bool IsToHandles(Instruction instruction) =>
        instruction.OpCode == OpCodes.Call && instruction.Operand is MethodReference { Name: "ToHandleArray", HasThis: false };

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

    // Before each `call ToHandleArray(IEnumerable<Tensor>)`: `call Enumerable.ToArray<Tensor>; dup; stloc array`, so the
    // tensors the sequence makes stay referenced by a local that step 3 keeps alive across the native calls.
    void MaterialiseSequences(MethodBody body, ILProcessor il)
    {
        foreach (var call in body.Instructions.Where(IsSequenceToHandles).ToList())
        {
            var sequence = ((MethodReference)call.Operand).Parameters[0].ParameterType;
            var element = ((GenericInstanceType)sequence).GenericArguments[0];
            var array = new VariableDefinition(new ArrayType(element));
            body.Variables.Add(array);
            var toArray = il.Create(OpCodes.Call, ToArray(element));
            il.InsertBefore(call, toArray);
            var dup = il.Create(OpCodes.Dup);
            il.InsertAfter(toArray, dup);
            il.InsertAfter(dup, il.Create(OpCodes.Stloc, array));
            Retarget(body, call, toArray);
            Sequences++;
        }
    }

    static bool IsSequenceToHandles(Instruction instruction) =>
        instruction.OpCode == OpCodes.Call
        && instruction.Operand is MethodReference { Name: "ToHandleArray", HasThis: false, Parameters.Count: 1 } callee
        && callee.Parameters[0].ParameterType is GenericInstanceType { ElementType.FullName: "System.Collections.Generic.IEnumerable`1" };

    MethodReference ToArray(TypeReference element)
    {
        var linq = module.AssemblyReferences.FirstOrDefault(a => a.Name == "System.Linq")
            ?? throw new InvalidOperationException($"{module.FileName} calls ToHandleArray on a sequence but does not reference System.Linq.");
        var enumerable = new TypeReference("System.Linq", "Enumerable", module, linq);
        var method = new MethodReference("ToArray", module.TypeSystem.Void, enumerable) { HasThis = false };
        var t = new GenericParameter("TSource", method);
        method.GenericParameters.Add(t);
        method.ReturnType = new ArrayType(t);
        var ienumerable = new TypeReference("System.Collections.Generic", "IEnumerable`1", module, module.TypeSystem.CoreLibrary);
        var sequenceOfT = new GenericInstanceType(ienumerable);
        sequenceOfT.GenericArguments.Add(t);
        method.Parameters.Add(new ParameterDefinition(sequenceOfT));
        var instance = new GenericInstanceMethod(method);
        instance.GenericArguments.Add(element);
        return instance;
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
            $"{MarkerVersion}; {NativeCalls} native calls in {Methods} methods, {Sequences} tensor sequences held, {Forwarders} handle forwarders"));
        module.Assembly.CustomAttributes.Add(mark);
    }
}
