using Medformer.KeepAlive;
using Mono.Cecil;

// medformer-keepalive SOURCE TARGET: writes TARGET, a copy of TorchSharp.dll SOURCE in which no native call can
// outlive the objects whose handles it passes (KeepAliveRewriter). Writes through a temporary file and a rename, so
// parallel builds that run it at once each see either no file or a whole one.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: Medformer.KeepAlive SOURCE TARGET");
    return 2;
}
string source = Path.GetFullPath(args[0]), target = Path.GetFullPath(args[1]);
try
{
    var resolver = new DefaultAssemblyResolver();
    resolver.AddSearchDirectory(Path.GetDirectoryName(source)!);
    resolver.AddSearchDirectory(Path.GetDirectoryName(typeof(object).Assembly.Location)!);
    using var assembly = AssemblyDefinition.ReadAssembly(source, new ReaderParameters { AssemblyResolver = resolver });
    if (KeepAliveRewriter.Marker(assembly) is { } marker)
    {
        Console.Error.WriteLine($"{source} was already rewritten ({marker}); refusing to rewrite it twice.");
        return 1;
    }
    var rewriter = new KeepAliveRewriter(assembly.MainModule);
    rewriter.Rewrite();
    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
    string temp = $"{target}.{Guid.NewGuid():N}.tmp";
    assembly.Write(temp);
    File.Move(temp, target, overwrite: true);
    Console.WriteLine($"{Path.GetFileName(target)}: kept arguments alive across {rewriter.NativeCalls} native calls in {rewriter.Methods} methods " +
        $"({rewriter.HandleReads} handle reads named, {rewriter.Sequences} tensor sequences held as arrays, " +
            $"{rewriter.Forwarders} methods that forward handles)");
    return 0;
}
catch (Exception e) when (e is IOException or BadImageFormatException or InvalidOperationException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"cannot rewrite {source}: {e.Message}");
    return 1;
}
