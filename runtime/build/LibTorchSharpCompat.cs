// MSBuild task (compiled by RoslynCodeTaskFactory): makes TorchSharp's native library load on a system whose
// libstdc++ predates GCC 13 (Debian 12 stops at GLIBCXX_3.4.30).
//
// libLibTorchSharp.so 0.107.0 requires version GLIBCXX_3.4.32 of libstdc++ for one symbol,
// std::ios_base_library_init(), that GCC 13 emits only to force link order: no relocation refers to it, so the
// symbol is never looked up. Marking that version requirement weak (VER_FLG_WEAK in its Vernaux entry) lets
// ld.so load the library against an older libstdc++. The patch is made on a copy, only when the system's
// libstdc++ lacks the version, and is idempotent.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class LibTorchSharpCompat : Task
{
    const ushort VerFlagWeak = 0x2;
    const uint ShtGnuVerneed = 0x6ffffffe;

    [Required] public string Source { get; set; } = "";
    [Required] public string OutputDirectory { get; set; } = "";
    [Required] public string RequiredVersion { get; set; } = "";
    public string SystemLibStdCxx { get; set; } = "";
    [Output] public string Patched { get; set; } = "";

    public override bool Execute()
    {
        try
        {
            if (!NeedsPatch()) return true;
            string target = Path.Combine(OutputDirectory, Path.GetFileName(Source));
            if (File.Exists(target) && File.GetLastWriteTimeUtc(target) >= File.GetLastWriteTimeUtc(Source))
            {
                Patched = target;
                return true;
            }
            byte[] elf = File.ReadAllBytes(Source);
            int marked = MarkVersionWeak(elf, RequiredVersion);
            if (marked == 0)
            {
                Log.LogMessage(MessageImportance.Low, Source + " does not require " + RequiredVersion + "; left as it is.");
                return true;
            }
            Directory.CreateDirectory(OutputDirectory);
            string temp = target + "." + Guid.NewGuid().ToString("N") + ".tmp";
            File.WriteAllBytes(temp, elf);
            if (File.Exists(target)) File.Delete(target);
            File.Move(temp, target);
            Log.LogMessage(MessageImportance.Normal, "Patched " + Source + " -> " + target + " (" + RequiredVersion + " weak; the system libstdc++ lacks it).");
            Patched = target;
            return true;
        }
        catch (Exception e)
        {
            Log.LogError("Could not prepare " + Source + " for this system's libstdc++: " + e.Message);
            return false;
        }
    }

    bool NeedsPatch()
    {
        string? lib = FindSystemLibStdCxx();
        if (lib == null)
        {
            Log.LogWarning("No system libstdc++.so.6 found; TorchSharp's native library is left unpatched.");
            return false;
        }
        byte[] needle = Encoding.ASCII.GetBytes(RequiredVersion + "\0");
        return IndexOf(File.ReadAllBytes(lib), needle) < 0;
    }

    string? FindSystemLibStdCxx()
    {
        if (SystemLibStdCxx.Length > 0) return File.Exists(SystemLibStdCxx) ? SystemLibStdCxx : null;
        foreach (string dir in new[] { "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu" })
        {
            string candidate = Path.Combine(dir, "libstdc++.so.6");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    // Walks .gnu.version_r (ELF64, little endian) and sets VER_FLG_WEAK on every Vernaux named `version`.
    static int MarkVersionWeak(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("not a 64-bit little-endian ELF file");
        ulong shoff = U64(elf, 0x28);
        int shentsize = U16(elf, 0x3a), shnum = U16(elf, 0x3c);
        int marked = 0;
        for (int i = 0; i < shnum; i++)
        {
            int sh = Checked(elf, shoff + (ulong)(i * shentsize), 64);
            if (U32(elf, sh + 4) != ShtGnuVerneed) continue;
            int link = (int)U32(elf, sh + 40);
            int strtab = Checked(elf, U64(elf, Checked(elf, shoff + (ulong)(link * shentsize), 64) + 24), 1);
            int need = Checked(elf, U64(elf, sh + 24), 16);
            while (true)
            {
                int count = U16(elf, need + 2);
                int aux = Checked(elf, (ulong)need + U32(elf, need + 8), 16);
                for (int a = 0; a < count; a++)
                {
                    int name = Checked(elf, (ulong)strtab + U32(elf, aux + 8), 1);
                    int end = Array.IndexOf(elf, (byte)0, name);
                    if (end > name && Encoding.ASCII.GetString(elf, name, end - name) == version)
                    {
                        ushort flags = (ushort)U16(elf, aux + 4);
                        Array.Copy(BitConverter.GetBytes((ushort)(flags | VerFlagWeak)), 0, elf, aux + 4, 2);
                        marked++;
                    }
                    aux = Checked(elf, (ulong)aux + U32(elf, aux + 12), 16);
                }
                uint next = U32(elf, need + 12);
                if (next == 0) break;
                need = Checked(elf, (ulong)need + next, 16);
            }
        }
        return marked;
    }

    // The task compiles against netstandard2.0, which has no span search.
    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = Array.IndexOf(haystack, needle[0]); i >= 0 && i <= haystack.Length - needle.Length; i = Array.IndexOf(haystack, needle[0], i + 1))
        {
            int k = 1;
            while (k < needle.Length && haystack[i + k] == needle[k]) k++;
            if (k == needle.Length) return i;
        }
        return -1;
    }

    static int Checked(byte[] elf, ulong offset, int size)
    {
        if (offset + (ulong)size > (ulong)elf.Length) throw new InvalidDataException("offset out of range");
        return (int)offset;
    }

    static int U16(byte[] b, int o) => BitConverter.ToUInt16(b, o);
    static uint U32(byte[] b, int o) => BitConverter.ToUInt32(b, o);
    static ulong U64(byte[] b, int o) => BitConverter.ToUInt64(b, o);
}
