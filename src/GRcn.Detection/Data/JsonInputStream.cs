// A read-only stream over a JSON file (COCO annotations and results) that stops bad input early:
// the first byte that is not whitespace (or the UTF-8 byte-order mark) must open an object or an
// array, so /dev/zero or a binary file is refused at its first block, and reading stops past a
// byte limit, so an endless stream of whitespace or a file too large for JsonDocument (2 GiB)
// gives InvalidDataException naming the file instead of filling memory.
namespace GRcn.Detection.Data;

internal sealed class JsonInputStream(Stream inner, string source, long maxBytes = JsonInputStream.MaxBytes) : Stream
{
    /// <summary>Largest JSON file read: 1.5 GiB (COCO 2017's training annotations are 448 MB; JsonDocument holds at most 2 GiB).</summary>
    public const long MaxBytes = 3L << 29;

    private long _read;
    private bool _started;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => _read; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        for (int i = 0; i < n && !_started; i++)
        {
            byte b = buffer[i];
            if (b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0xEF or 0xBB or 0xBF) continue;
            if (b is not ((byte)'{' or (byte)'['))
                throw new InvalidDataException($"{source}: not JSON: the first byte that is not whitespace is 0x{b:X2}, not '{{' or '['");
            _started = true;
        }
        _read += n;
        if (_read > maxBytes) throw new InvalidDataException($"{source}: more than {maxBytes} bytes; too large for a JSON file (not read further)");
        return n;
    }

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
