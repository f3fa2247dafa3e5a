using Microsoft.Win32.SafeHandles;

namespace Medformer.Datasets.Formats;

/// <summary>
/// Random access to the bytes of a dataset: a file (read through a window, so element headers cost no system call
/// each) or memory (an inflated deflate dataset, or bytes handed in). Callers check ranges against
/// <see cref="Length"/> before reading; a read outside is a bug, not bad input.
/// </summary>
abstract class DicomSource : IDisposable
{
    public abstract long Length { get; }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>; the range lies inside the source.</summary>
    public abstract void Read(long offset, Span<byte> buffer);

    public virtual void Dispose() { }

    public static DicomSource Open(string path)
    {
        try
        {
            return new FileSource(File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read));
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"{path}: no such file", path);
        }
        catch (DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"{path}: no such file", path);
        }
    }

    public static DicomSource FromBytes(ReadOnlyMemory<byte> bytes) => new MemorySource(bytes);

    sealed class FileSource(SafeFileHandle handle) : DicomSource
    {
        const int Window = 1 << 16;
        readonly long length = RandomAccess.GetLength(handle);
        readonly byte[] window = new byte[Window];
        long windowStart = -1;
        int windowLength;

        public override long Length => length;

        public override void Read(long offset, Span<byte> buffer)
        {
            if (offset < 0 || buffer.Length > length - offset) throw new ArgumentOutOfRangeException(nameof(offset));
            if (buffer.Length > Window / 4)
            {
                ReadExactly(offset, buffer);
                return;
            }
            if (windowStart < 0 || offset < windowStart || offset + buffer.Length > windowStart + windowLength)
            {
                windowStart = offset;
                windowLength = (int)Math.Min(Window, length - offset);
                ReadExactly(offset, window.AsSpan(0, windowLength));
            }
            window.AsSpan((int)(offset - windowStart), buffer.Length).CopyTo(buffer);
        }

        void ReadExactly(long offset, Span<byte> buffer)
        {
            while (buffer.Length > 0)
            {
                int n = RandomAccess.Read(handle, buffer, offset);
                // The file shrank under us: a fault of the file, reported as one.
                if (n <= 0) throw new EndOfStreamException($"the file ends at byte {offset}, before its length when opened ({length})");
                buffer = buffer[n..];
                offset += n;
            }
        }

        public override void Dispose() => handle.Dispose();
    }

    sealed class MemorySource(ReadOnlyMemory<byte> bytes) : DicomSource
    {
        public override long Length => bytes.Length;

        public override void Read(long offset, Span<byte> buffer)
        {
            if (offset < 0 || buffer.Length > bytes.Length - offset) throw new ArgumentOutOfRangeException(nameof(offset));
            bytes.Span.Slice((int)offset, buffer.Length).CopyTo(buffer);
        }
    }
}
