using Microsoft.AspNetCore.Http;

namespace FuncProxy.Proxying;

/// <summary>
/// Wraps <c>HttpResponse.Body</c>: every byte passes straight through to the client, and a <see cref="UsageScanner"/> chosen
/// by the response's content type (known by the first write) reads token usage on the way. Nothing is held back from
/// the client and the body is never buffered. Bodies are identity-encoded: the gateway asks upstreams for no compression.
/// </summary>
internal sealed class UsageReadingStream : Stream
{
    private readonly Stream _inner;
    private readonly HttpResponse _response;
    private UsageScanner? _scanner;
    private bool _started;

    public UsageReadingStream(Stream inner, HttpResponse response)
    {
        _inner = inner;
        _response = response;
    }

    public TokenUsage Usage => _scanner?.Usage ?? default;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    private void Scan(ReadOnlySpan<byte> bytes)
    {
        if (!_started)
        {
            _started = true;
            var encoded = _response.Headers.ContentEncoding.Count > 0 && _response.Headers.ContentEncoding.ToString() != "identity";
            _scanner = encoded ? null : UsageScanner.For(_response.ContentType);
        }
        _scanner?.Feed(bytes);
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Scan(buffer);
        _inner.Write(buffer);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Scan(buffer.Span);
        return _inner.WriteAsync(buffer, cancellationToken);
    }

    public override void Flush() => _inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
