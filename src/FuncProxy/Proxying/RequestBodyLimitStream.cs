namespace FuncProxy.Proxying;

/// <summary>
/// Passes the request body through while counting it, and fails the read that crosses the limit, so bodies sent without
/// Content-Length (chunked) are held to the same limit as those that declare it. Works the same in both hosts.
/// </summary>
internal sealed class RequestBodyLimitStream(Stream inner, long limit) : Stream
{
    private long _read;

    public bool LimitExceeded { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

    public override int Read(Span<byte> buffer) => Count(inner.Read(buffer));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Count(await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int Count(int n)
    {
        _read += n;
        if (_read > limit)
        {
            LimitExceeded = true;
            throw new RequestBodyTooLargeException();
        }
        return n;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>The request body crossed the upstream's limit: the client gets 413.</summary>
public sealed class RequestBodyTooLargeException() : IOException("The request body is larger than the configured limit.");
