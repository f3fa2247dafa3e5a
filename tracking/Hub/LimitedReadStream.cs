namespace Medformer.Tracking.Hub;

/// <summary>
/// A read-only view of a stream that fails once more than <see cref="Limit"/> bytes have come out of it: the
/// decompressed side of a .tar.gz is counted where it is produced, so no header, padding or member escapes the count.
/// </summary>
sealed class LimitedReadStream(Stream inner, long limit, string source) : Stream
{
    public long Limit { get; } = limit;

    public long Consumed { get; private set; }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int read = inner.Read(buffer);
        Consumed += read;
        if (Consumed > Limit) throw new InvalidDataException($"{source}: unpacks to more than {Limit} bytes (64 times its size); refused");
        return read;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => Consumed; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
